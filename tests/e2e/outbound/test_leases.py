"""Fast recovery of outbound leases: a lease whose owner's heartbeat is gone is released at once
(a live owner keeps its lease however long its delivery takes), and a real worker SIGKILLed in the
middle of a delivery has its message delivered by another long before its lease would expire."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.mapping.outbound import OutboundDraft
from shared.outbound.messages import OutboundMessageRepository
from shared.queues.liveness import Heartbeat
from shared.settings import Settings
from tests.e2e.outbound.helpers import load_attempts, load_message, make_s2s_tenant, post_ok, wait_until
from tests.e2e.outbound.processes import WorkerProcess
from tests.factories import make_tenant
from tests.fakes.s2s_server import FakeS2SServer
from worker.outbound.leases import OWNED_LEASE_SECONDS, release_leases_of_dead_workers

LONG_LEASE = timedelta(seconds=OWNED_LEASE_SECONDS)
# A bound on the wait, far under the killed worker's lease (OWNED_LEASE_SECONDS): only the
# heartbeat-based release can deliver within it.
RECOVERY_BOUND_SECONDS = 60.0


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.require_redis_url())
    yield client
    await client.aclose()


async def claimed_message(
    sessionmaker: async_sessionmaker[AsyncSession], owner: str, now: datetime
) -> tuple[str, uuid.UUID]:
    """A tenant with one message, claimed by `owner` with a long lease."""
    tenant_id = (await make_tenant(sessionmaker)).id
    async with session_scope(sessionmaker) as session:
        repository = OutboundMessageRepository(session)
        message_id = await repository.add(tenant_id, OutboundDraft("customer_update", "a", {"n": 1}), now)
        [claimed] = await repository.claim_due(tenant_id, now, now + LONG_LEASE, 10, owner=owner)
    assert claimed.id == message_id
    assert (await load_message(sessionmaker, message_id)).lease_owner == owner
    return tenant_id, message_id


async def claimable(sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str, now: datetime) -> list[uuid.UUID]:
    async with session_scope(sessionmaker) as session:
        claimed = await OutboundMessageRepository(session).claim_due(tenant_id, now, now + LONG_LEASE, 10)
    return [message.id for message in claimed]


async def test_a_dead_owners_lease_is_released_at_once(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], redis: Redis
) -> None:
    now = datetime.now(UTC)
    tenant_id, message_id = await claimed_message(sessionmaker, f"dead-{uuid.uuid4().hex[:8]}", now)
    assert await claimable(sessionmaker, tenant_id, now) == []  # leased

    released = await release_leases_of_dead_workers(sessionmaker, redis, settings.queue_name, now)

    assert released >= 1
    message = await load_message(sessionmaker, message_id)
    assert (message.lease_expires_at, message.lease_owner, message.status) == (None, None, "queued")
    assert await claimable(sessionmaker, tenant_id, now) == [message_id]


async def test_a_live_owner_keeps_its_lease(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], redis: Redis
) -> None:
    heartbeat = Heartbeat(redis, settings.queue_name)
    await heartbeat.start()
    try:
        now = datetime.now(UTC)
        tenant_id, message_id = await claimed_message(sessionmaker, heartbeat.worker_id, now)
        await release_leases_of_dead_workers(sessionmaker, redis, settings.queue_name, now)
        assert (await load_message(sessionmaker, message_id)).lease_owner == heartbeat.worker_id
        assert await claimable(sessionmaker, tenant_id, now) == []
    finally:
        await heartbeat.stop()
    # Stopped (a clean shutdown removes its key): the lease goes at the next scan.
    await release_leases_of_dead_workers(sessionmaker, redis, settings.queue_name, now)
    assert await claimable(sessionmaker, tenant_id, now) == [message_id]


async def test_a_worker_killed_mid_delivery_is_taken_over_by_another(
    settings: Settings,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    fake_s2s: FakeS2SServer,
    tmp_path: Path,
) -> None:
    tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
    # The first worker's request hangs: it holds the lease while it waits for mParticle.
    fake_s2s.hang(times=None, seconds=60.0, api_key=tenant.api_key)
    first = WorkerProcess(settings, tmp_path / "worker-1.log").start()
    second = WorkerProcess(settings, tmp_path / "worker-2.log")
    try:
        message_id = await post_ok(client, tenant, "customer-updates", {"customer": {"id": "c-1"}})

        async def sending() -> bool:
            message = await load_message(sessionmaker, message_id)
            return message.lease_owner is not None and ("hang-start", tenant.api_key) in fake_s2s.log()

        await wait_until(sending, message="the first worker holding the message while it sends")
        first.kill()
        fake_s2s.clear_faults(tenant.api_key)
        killed_at = time.monotonic()
        second.start()

        async def delivered() -> bool:
            return (await load_message(sessionmaker, message_id)).status == "delivered"

        await wait_until(delivered, RECOVERY_BOUND_SECONDS, message="delivery by the second worker")
        print(f"\nkilled worker's message delivered {time.monotonic() - killed_at:.1f}s after the kill")
    except AssertionError:
        print("first worker:\n", first.output(), "\nsecond worker:\n", second.output())
        raise
    finally:
        first.kill()
        second.kill()
    # Only the second worker's attempt is logged; mParticle accepted the batch once.
    assert [a.status_code for a in await load_attempts(sessionmaker, message_id)] == [202]
    message = await load_message(sessionmaker, message_id)
    assert [a.batch for a in fake_s2s.accepted(tenant.api_key)] == [message.batch]
