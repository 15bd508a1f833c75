"""`loyalty-bridge migrate` waits (bounded) for a PostgreSQL that is still starting."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shared.migrate import wait_for_database
from tests.private_postgres import PrivatePostgres
from tests.private_redis import free_port

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
SECRET_KEY = "migrate-waits-test-secret-key-0123456789"


@pytest.fixture
async def stopped_postgres() -> AsyncIterator[PrivatePostgres]:
    """A private cluster, initialized, then stopped."""
    server = PrivatePostgres()
    await server.start()
    server.stop()
    yield server
    server.remove()


async def test_migrate_waits_for_a_database_that_starts_later(stopped_postgres: PrivatePostgres) -> None:
    environment = {**os.environ, "DATABASE_URL": stopped_postgres.url, "SECRET_KEY": SECRET_KEY}
    migrate = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "migrate"],
        env=environment,
        cwd=REPOSITORY_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await asyncio.sleep(2.0)  # migrate starts while nothing listens on the port
        assert migrate.poll() is None, "still waiting, not failed"
        await stopped_postgres.start()
        output, _ = await asyncio.to_thread(migrate.communicate, timeout=120)
    finally:
        if migrate.poll() is None:
            migrate.kill()
    assert migrate.returncode == 0, output.decode()
    assert b"waiting for PostgreSQL" in output
    connection = await asyncpg.connect(stopped_postgres.url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM alembic_version") == 1
    finally:
        await connection.close()


def test_waiting_is_bounded_and_ends_with_a_clear_error() -> None:
    nothing_listens = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(RuntimeError, match=r"PostgreSQL did not accept a connection within 1s: .*Error"):
        wait_for_database(nothing_listens, timeout_seconds=1)


def test_an_error_waiting_cannot_fix_is_reported_at_once(database_url: str) -> None:
    unknown_database = database_url.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(RuntimeError, match="InvalidCatalogNameError") as refused:
        wait_for_database(unknown_database, timeout_seconds=600)
    assert "within" not in str(refused.value)
