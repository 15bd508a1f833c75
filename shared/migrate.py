"""Run the alembic migrations that ship inside the distribution (no alembic.ini, no checkout needed)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config


def alembic_config(database_url: str) -> Config:
    """An alembic Config pointing at the packaged `migrations` scripts and the given database."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    # alembic interpolates %-signs in option values; escape them so passwords survive.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str) -> None:
    """`alembic upgrade heads`; blocking, idempotent and safe to run concurrently (advisory lock)."""
    command.upgrade(alembic_config(database_url), "heads")
