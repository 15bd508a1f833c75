"""Run the alembic migrations that ship inside the distribution (no alembic.ini, no checkout needed)."""

from __future__ import annotations

import asyncio
import logging
from importlib import resources

import asyncpg
from alembic import command
from alembic.config import Config
from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from shared.settings import plain_database_url
from shared.transient import is_transient_database_error

logger = logging.getLogger(__name__)

DATABASE_WAIT_SECONDS = 60.0
PROBE_TIMEOUT_SECONDS = 2.0


def alembic_config(database_url: str) -> Config:
    """An alembic Config pointing at the packaged `migrations` scripts and the given database."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    # alembic interpolates %-signs in option values; escape them so passwords survive.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str, secret_key: SecretStr | None = None) -> None:
    """`alembic upgrade heads`; blocking, idempotent and safe to run concurrently (advisory lock).
    `secret_key` (else $SECRET_KEY) is what data migrations encrypt stored secrets with."""
    config = alembic_config(database_url)
    if secret_key is not None:
        config.attributes["secret_key"] = secret_key.get_secret_value()
    command.upgrade(config, "heads")


def wait_for_database(database_url: str, *, timeout_seconds: float = DATABASE_WAIT_SECONDS) -> None:
    """Block until PostgreSQL accepts a connection (a server still starting, or restarting, is
    waited for with growing delays); RuntimeError naming the last error after `timeout_seconds`,
    or at once for an error that waiting cannot fix (unknown database, bad password)."""

    def log_wait(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        logger.warning("waiting for PostgreSQL (%s)", error.__class__.__name__)

    try:
        for attempt in Retrying(
            retry=retry_if_exception(is_transient_database_error),
            wait=wait_exponential_jitter(multiplier=0.5, max=5.0, jitter=0.25),
            stop=stop_after_delay(timeout_seconds),
            before_sleep=log_wait,
            reraise=True,
        ):
            with attempt:
                asyncio.run(_probe(database_url))
    except Exception as error:
        waited = f" within {timeout_seconds:.0f}s" if is_transient_database_error(error) else ""
        raise RuntimeError(
            f"PostgreSQL did not accept a connection{waited}: {error.__class__.__name__}: {error}"
        ) from None


async def _probe(database_url: str) -> None:
    connection = await asyncpg.connect(plain_database_url(database_url), timeout=PROBE_TIMEOUT_SECONDS)
    await connection.close()
