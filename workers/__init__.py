"""The worker process: the outbox relay and maintenance. `python -m workers` runs them alone;
the embedded default runs the relay inside the web process."""
