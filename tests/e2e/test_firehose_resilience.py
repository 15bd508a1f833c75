"""Redis outages, on a private redis-server this test stops and restarts: the worker rides them out
(also when Redis is down at start-up), and the proxy answers 503 during one and 200 after it,
without a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from proxy.app import create_app
from shared.settings import Settings
from tests.e2e.conftest import PrivateRedis, eventually
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
    on_private = settings.model_copy(update={"redis_url": private_redis.url})
    tenant = await new_tenant(sessionmaker)
    private_redis.stop()
    async with proxy_on(on_private) as (app, client):
        await refresh_configs(app)
        payload = event_request(tenant, custom_event("ping"), customer="C-s")
        refused = await post_firehose(client, payload)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "QUEUE_UNAVAILABLE"
        entries = await logged_errors(sessionmaker, tenant.id)
        assert [(e.source, e.error_code, e.request_id) for e in entries] == [
            ("proxy_forwarding", "QUEUE_UNAVAILABLE", payload["id"])
        ]

        async with worker_running(on_private) as worker:
            await asyncio.sleep(1.0)  # starting without Redis: it keeps retrying instead of exiting
            assert not worker.done()
            await private_redis.start()
            # mParticle retries the refused request; the same proxy (never restarted) accepts it now.
            accepted = await post_firehose(client, payload)
            assert accepted.status_code == 200
            reader = AdminReader(client, admin_headers, tenant.id)

            async def applied() -> bool:
                return bool(await reader.customers()) and len(await reader.ledger("C-s")) == 1

            await eventually(applied)
        assert worker.exception() is None
