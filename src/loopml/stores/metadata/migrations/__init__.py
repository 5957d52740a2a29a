"""Alembic migrations of the metadata schema, run automatically and under a lock."""
