"""The Chatwoot-compatible agent API under /api/v1 (contract §6), `api_access_token` auth."""
