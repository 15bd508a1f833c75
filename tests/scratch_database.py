"""A database of its own, created on the test server and dropped afterwards: the run's database
(tests/conftest.py), tests that act on whole tables (ANALYZE after a bulk load, retention purges
across tenants), and the packaging test whose installed CLI migrates an empty one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.engine import make_url

from shared.migrate import upgrade_to_head
from shared.settings import normalize_database_url, plain_database_url


@asynccontextmanager
async def scratch_database(server_url: str, prefix: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """Create a database on the server of `server_url`, migrate it to head (unless `migrate` is
    False), yield its URL, drop it."""
    base_url = normalize_database_url(server_url)
    admin_url = plain_database_url(base_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            await asyncio.to_thread(upgrade_to_head, url)
        yield url
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
