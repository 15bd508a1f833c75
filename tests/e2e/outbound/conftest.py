"""Fixtures of the outbound end-to-end tests: fast resend settings, the fake S2S server and an
in-process arq worker running (not in burst mode) on the test's own queue."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
from arq.worker import Worker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import Settings
from shared.tenants.config import TenantConfigCache
from tests.fakes.s2s_server import FakeS2SServer
from worker.outbound.mparticle_client import MParticleClient
from worker.outbound.service import OutboundDelivery

STOP_WAIT_SECONDS = 15.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small resend timings so faults play out in well under a second."""
    return settings.model_copy(
        update={"outbound_retry_base_seconds": 0.1, "outbound_timeout_seconds": 1.0, "outbound_max_resends": 5}
    )


@pytest.fixture(scope="session")
def fake_s2s() -> Iterator[FakeS2SServer]:
    """One fake S2S server for the session; tests keep apart by their own api keys."""
    server = FakeS2SServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_fake_s2s() -> Iterator[FakeS2SServer]:
    """A fake S2S server of this test alone (for tests that stop and restart it)."""
    server = FakeS2SServer()
    server.start()
    yield server
    server.stop()


async def start_worker(settings: Settings) -> Callable[[], Awaitable[None]]:
    """Start an in-process worker; returns the coroutine function that stops it."""
    from worker.main import build_worker

    worker: Worker = build_worker(settings, handle_signals=False)
    task = asyncio.create_task(worker.main())
    worker.main_task = task

    async def stop() -> None:
        # Let arq's loop return by itself (cancelling it inside a Redis command can hang in
        # StreamWriter.drain), cancelling any job it starts meanwhile (they are re-run later).
        worker.burst = True
        worker.max_burst_jobs = 0
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while not task.done() and time.monotonic() < deadline:
            for job in list(worker.tasks.values()):
                job.cancel()
            await asyncio.wait({task}, timeout=0.1)
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        worker.tasks.clear()
        await worker.close()

    return stop


@pytest.fixture
async def running_worker(settings: Settings) -> AsyncIterator[None]:
    """A worker running for the whole test: it takes kicks and runs the once-a-second dispatcher."""
    stop = await start_worker(settings)
    try:
        yield
    finally:
        await stop()


@pytest.fixture
async def delivery(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[OutboundDelivery]:
    """The worker's delivery service, in process and driven by the test (no arq, no schedule)."""
    tenant_configs = TenantConfigCache(sessionmaker, settings.config_cache_seconds)
    await tenant_configs.start()
    async with httpx.AsyncClient() as http:
        try:
            yield OutboundDelivery(
                sessionmaker=sessionmaker,
                client=MParticleClient(http, timeout_seconds=settings.outbound_timeout_seconds),
                tenant_configs=tenant_configs,
                settings=settings,
            )
        finally:
            await tenant_configs.stop()
