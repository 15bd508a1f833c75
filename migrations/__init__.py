"""Alembic migration scripts, shipped inside the distribution (see shared/migrate.py)."""
