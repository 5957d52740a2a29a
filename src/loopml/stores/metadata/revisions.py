"""Schema revisions this code knows, read from the migration file names (no Alembic import)."""

from __future__ import annotations

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def known_revisions() -> list[str]:
    """Oldest first."""
    return sorted(p.name.split("_", 1)[0] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py"))


def head_revision() -> str:
    return known_revisions()[-1]
