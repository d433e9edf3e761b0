"""Realtime chat server, wire-compatible with Chatwoot's website widget."""
