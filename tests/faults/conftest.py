"""Fixtures of the fault suite: a private PostgreSQL cluster for the session (scenarios stop it),
a private, persistent Redis per scenario, the fake S2S server, a tenant wired to both directions,
and the scenario's Rig (tests/faults/harness.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import create_engine, create_sessionmaker
from shared.migrate import upgrade_to_head
from shared.settings import Settings, normalize_database_url
from tests.conftest import ADMIN_KEY, OUTBOUND_ALLOWED_HOSTS, SECRET_KEY
from tests.e2e.outbound.helpers import S2STenant, make_s2s_tenant
from tests.fakes.s2s_server import FakeS2SServer
from tests.faults.harness import Rig
from tests.private_postgres import PrivatePostgres
from tests.private_redis import PrivateRedis


@pytest.fixture(scope="session")
async def fault_postgres() -> AsyncIterator[PrivatePostgres]:
    """One private cluster for the fault suite, migrated to head."""
    server = PrivatePostgres()
    await server.start()
    await asyncio.to_thread(upgrade_to_head, normalize_database_url(server.url), SecretStr(SECRET_KEY))
    yield server
    server.remove()


@pytest.fixture(scope="session")
def fault_s2s() -> Iterator[FakeS2SServer]:
    server = FakeS2SServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def fault_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis", persistent=True)
    await server.start()
    yield server
    server.stop()


@pytest.fixture
def fault_settings(fault_postgres: PrivatePostgres, fault_redis: PrivateRedis) -> Settings:
    return Settings(
        database_url=fault_postgres.url,
        redis_url=fault_redis.url,
        admin_api_key=ADMIN_KEY,
        secret_key=SECRET_KEY,
        outbound_allowed_hosts=OUTBOUND_ALLOWED_HOSTS,
        queue_name=f"lb-fault:{uuid.uuid4().hex[:12]}",
        config_cache_seconds=0.5,
    )


@pytest.fixture
async def fault_sessionmaker(fault_settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(fault_settings, application_name="tests-faults", pool_size=2)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def fault_tenant(fault_sessionmaker: async_sessionmaker[AsyncSession], fault_s2s: FakeS2SServer) -> S2STenant:
    return await make_s2s_tenant(
        fault_sessionmaker,
        fault_s2s,
        inbound={"auto_subscribe": True},
        inbound_mappings=[
            {"loyalty_event": "tick", "event_type": "custom_event", "event_name": "tick", "attributes": {"n": "{n}"}}
        ],
    )


@pytest.fixture
async def rig(
    fault_settings: Settings,
    fault_tenant: S2STenant,
    fault_s2s: FakeS2SServer,
    fault_postgres: PrivatePostgres,
    tmp_path: Path,
) -> AsyncIterator[Rig]:
    scenario = Rig(fault_settings, fault_tenant, fault_s2s, fault_postgres.url, tmp_path)
    try:
        yield scenario
    finally:
        scenario.stop_all()
