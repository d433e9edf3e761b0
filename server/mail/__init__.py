"""Outgoing mail: the conversation transcript a visitor asks for (transcript.py builds it),
sent through SMTP by a bounded queue and its worker, off the request path (mailer.py)."""
