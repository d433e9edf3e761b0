"""The ElevenLabs voice endpoints: a signed URL for private agents, transcript turns."""
