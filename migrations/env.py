"""Alembic environment: async engine from the URL the caller put in the config, one advisory lock so
concurrent `loyalty-bridge migrate` runs are safe."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import shared.models  # noqa: F401  (registers every table on the metadata)
from shared.db import Base

MIGRATION_LOCK_KEY = 7_202_611_280  # any constant; only migrate takes this lock

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    # A session-level lock: it outlives the migration transaction and dies with the connection.
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


async def _run_online() -> None:
    engine = create_async_engine(context.config.get_main_option("sqlalchemy.url") or "")
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
