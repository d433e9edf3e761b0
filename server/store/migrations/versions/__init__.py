"""The schema revisions, oldest first (docs/migrations.md says how to write one)."""
