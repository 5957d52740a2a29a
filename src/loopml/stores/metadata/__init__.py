"""The metadata store: SQLAlchemy over SQLite (default) or PostgreSQL, with Alembic migrations."""
