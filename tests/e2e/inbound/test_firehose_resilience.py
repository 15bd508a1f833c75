"""Redis outages, on a private redis-server this test stops and restarts: the worker rides them out
(also when Redis is down at start-up); the proxy keeps answering 200 by spooling requests to
PostgreSQL, which the worker moves into the queue once Redis is back; 503 only when PostgreSQL
refuses too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from proxy.app import create_app
from shared.db import create_engine, create_sessionmaker
from shared.models import SpooledRequest
from shared.settings import Settings
from tests.e2e.conftest import PrivateRedis, eventually, own_database_sessionmaker, own_database_settings
from tests.factories import TenantFixture, make_tenant
from tests.inbound_helpers import (
    AdminReader,
    custom_event,
    event_request,
    logged_errors,
    post_firehose,
    refresh_configs,
)
from worker.main import run_worker


@pytest.fixture
def settings(settings: Settings, own_database_url: str) -> Settings:
    """A database of each test alone (tests/e2e/conftest.py): the worker's sweeps would otherwise
    also take up what earlier tests left in the shared one, and its stop could outlast its bound."""
    return own_database_settings(settings, own_database_url)


@pytest.fixture
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with own_database_sessionmaker(settings) as sessions:
        yield sessions


@asynccontextmanager
async def proxy_on(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client,
    ):
        yield app, client


@asynccontextmanager
async def worker_running(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """run_worker in this process (no signal handlers), stopped through its stop event."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop=stop, handle_signals=False))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def new_tenant(sessionmaker) -> TenantFixture:
    return await make_tenant(
        sessionmaker,
        inbound={"auto_subscribe": True},
        inbound_mappings=[{"loyalty_event": "ping", "event_type": "custom_event", "event_name": "ping"}],
    )


async def test_worker_survives_a_lost_redis(settings, sessionmaker, admin_headers, private_redis: PrivateRedis):
    on_private = settings.model_copy(update={"redis_url": private_redis.url})
    tenant = await new_tenant(sessionmaker)
    async with proxy_on(on_private) as (app, client), worker_running(on_private) as worker:
        await refresh_configs(app)
        reader = AdminReader(client, admin_headers, tenant.id)

        async def ledger_size(expected: int) -> bool:
            customers = await reader.customers()
            return bool(customers) and len(await reader.ledger("C-r")) == expected

        assert (
            await post_firehose(client, event_request(tenant, custom_event("ping"), customer="C-r"))
        ).status_code == 200
        await eventually(lambda: ledger_size(1))

        private_redis.stop()
        await asyncio.sleep(1.5)  # the worker notices and keeps restarting meanwhile
        assert not worker.done(), "the worker must not exit when Redis goes away"
        await private_redis.start()  # an empty Redis on the same port

        assert (
            await post_firehose(client, event_request(tenant, custom_event("ping"), customer="C-r"))
        ).status_code == 200
        await eventually(lambda: ledger_size(2))
    assert worker.exception() is None


async def test_redis_down_at_start_then_back(settings, sessionmaker, admin_headers, private_redis: PrivateRedis):
    """Redis down: the proxy spools to PostgreSQL and answers 200; the worker, started without
    Redis, moves the spool into the queue once Redis is back, and the request is applied once."""
    on_private = settings.model_copy(update={"redis_url": private_redis.url})
    tenant = await new_tenant(sessionmaker)
    private_redis.stop()
    async with proxy_on(on_private) as (app, client):
        await refresh_configs(app)
        payload = event_request(tenant, custom_event("ping"), customer="C-s")
        assert (await post_firehose(client, payload)).status_code == 200
        assert (await post_firehose(client, payload)).status_code == 200  # mParticle retried
        assert await spooled_request_ids(sessionmaker, tenant.id) == [payload["id"]]
        assert await logged_errors(sessionmaker, tenant.id) == [], "accepted, not refused"

        async with worker_running(on_private) as worker:
            await asyncio.sleep(1.0)  # starting without Redis: it keeps retrying instead of exiting
            assert not worker.done()
            await private_redis.start()
            reader = AdminReader(client, admin_headers, tenant.id)

            async def applied() -> bool:
                return bool(await reader.customers()) and len(await reader.ledger("C-s")) == 1

            await eventually(applied)
            await eventually(lambda: spool_is_empty(sessionmaker, tenant.id))
            # The same id once more, now through the queue: answered 200, still applied once.
            assert (await post_firehose(client, payload)).status_code == 200
            second = event_request(tenant, custom_event("ping"), customer="C-s")
            assert (await post_firehose(client, second)).status_code == 200
            await eventually(lambda: ledger_has(reader, "C-s", 2))
            ledger = await reader.ledger("C-s")
        assert worker.exception() is None
    assert [event["request_id"] for event in ledger] == [payload["id"], second["id"]]


async def test_503_only_when_neither_redis_nor_postgresql_takes_the_request(
    settings, sessionmaker, private_redis: PrivateRedis
):
    on_private = settings.model_copy(update={"redis_url": private_redis.url})
    tenant = await new_tenant(sessionmaker)
    private_redis.stop()
    async with proxy_on(on_private) as (app, client):
        await refresh_configs(app)
        # The proxy's PostgreSQL goes away too (its config cache keeps serving from memory).
        unreachable = on_private.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/none"})
        engine = create_engine(unreachable, application_name="tests-unreachable")
        app.state.proxy.sessionmaker = create_sessionmaker(engine)
        try:
            payload = event_request(tenant, custom_event("ping"), customer="C-x")
            refused = await post_firehose(client, payload)
        finally:
            await engine.dispose()
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "QUEUE_UNAVAILABLE"
    assert await spooled_request_ids(sessionmaker, tenant.id) == []


async def spooled_request_ids(sessionmaker, tenant_id: str) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(SpooledRequest.request_id).where(SpooledRequest.tenant_id == tenant_id).order_by(SpooledRequest.id)
        )
        return list(rows)


async def spool_is_empty(sessionmaker, tenant_id: str) -> bool:
    return await spooled_request_ids(sessionmaker, tenant_id) == []


async def ledger_has(reader: AdminReader, customer: str, expected: int) -> bool:
    return len(await reader.ledger(customer)) == expected
