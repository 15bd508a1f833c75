"""Test fixtures: real PostgreSQL and Redis, a fresh database per run, a fresh queue per test.

The servers are the ones DATABASE_URL / REDIS_URL name; when unset, embedded ones are started
under ./var/test (see shared/dev/embedded.py). Tests create their own tenants with random ids, so
they never touch data they did not create.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.db import create_engine, create_sessionmaker
from shared.settings import Settings
from tests.scratch_database import scratch_database

ADMIN_KEY = "test-admin-key-0123456789"
# SECRET_KEY of every test process (shared/secret_box.py); factories encrypt with it too.
SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
# The fake S2S servers of the tests listen on loopback (shared/outbound/hosts.py).
OUTBOUND_ALLOWED_HOSTS = "127.0.0.1,localhost"


@pytest.fixture(scope="session")
def service_urls() -> Iterator[tuple[str, str]]:
    """(DATABASE_URL, REDIS_URL) of real servers: from the environment, else embedded ones."""
    database_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if database_url and redis_url:
        yield database_url, redis_url
        return
    from shared.dev.embedded import EmbeddedServices

    services = EmbeddedServices(os.path.join(os.getcwd(), "var", "test"), redis_appendonly=False)
    services.start()
    try:
        yield (database_url or services.database_url, redis_url or services.redis_url)
    finally:
        services.stop()


@pytest.fixture(scope="session")
async def database_url(service_urls: tuple[str, str]) -> AsyncIterator[str]:
    """A fresh database for this test run, migrated to head, dropped at the end."""
    async with scratch_database(service_urls[0], "lb_test") as url:
        yield url


# Every queue name of this run starts with this prefix, so the run can remove its own Redis keys
# at the end (and only its own: other runs may share the server).
RUN_QUEUE_PREFIX = f"lb-test:{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
async def forget_redis_keys_of_this_run(service_urls: tuple[str, str]) -> AsyncIterator[None]:
    """At the end of the run, delete the Redis keys its queues left (queued work keeps 7 days)."""
    yield
    from redis.asyncio import Redis

    redis = Redis.from_url(service_urls[1])
    try:
        for pattern in (f"{RUN_QUEUE_PREFIX}:*", f"arq:*{RUN_QUEUE_PREFIX}:*"):
            batch: list[bytes] = []
            async for key in redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await redis.unlink(*batch)
                    batch = []
            if batch:
                await redis.unlink(*batch)
    finally:
        await redis.aclose()


def settings_for_tests(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Settings of test processes: their own queue name, fast cache refresh and resend timing."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "admin_api_key": ADMIN_KEY,
        "secret_key": SECRET_KEY,
        "outbound_allowed_hosts": OUTBOUND_ALLOWED_HOSTS,
        "queue_name": f"{RUN_QUEUE_PREFIX}:{uuid.uuid4().hex[:12]}",
        "config_cache_seconds": 0.2,
        "outbound_retry_base_seconds": 0.2,
        "outbound_timeout_seconds": 2.0,
        "metrics_port": 0,  # a worker's /metrics on a free port: tests and runs never collide on 9108
    }
    return Settings(**(values | overrides))


@pytest.fixture
def settings(database_url: str, service_urls: tuple[str, str], forget_redis_keys_of_this_run: None) -> Settings:
    """Settings for one test: its own queue name, fast cache refresh and resend timing."""
    return settings_for_tests(database_url, service_urls[1])


@pytest.fixture(scope="session")
async def engine(database_url: str, service_urls: tuple[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(
        Settings(database_url=database_url, redis_url=service_urls[1]), application_name="tests", pool_size=5
    )
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on the test database, for arranging data and asserting on it directly."""
    return create_sessionmaker(engine)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The proxy app with its lifespan running."""
    from proxy.app import create_app

    application = create_app(settings)
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the proxy app in-process (ASGI)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        yield http


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


async def run_worker_until_idle(settings: Settings) -> None:
    """Run a burst worker on this test's queue until the queue is empty."""
    from worker.main import build_worker

    worker = build_worker(settings, burst=True, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()


@pytest.fixture
def drain_queue(settings: Settings):
    """`await drain_queue()` runs a burst worker over everything this test enqueued."""

    async def _drain() -> None:
        await run_worker_until_idle(settings)

    return _drain
