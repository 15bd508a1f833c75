"""The Firehose spool (PostgreSQL) and its mover: requests spooled while Redis refused them reach
the queue in priority then arrival order, each row is deleted only once Redis took it, and moving
a request that is already queued is harmless."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import SpooledRequest
from shared.queues.firehose import FirehoseQueue, QueuedRequest
from shared.queues.spool import FirehoseSpool, spool_size
from shared.settings import Settings
from tests.factories import TenantFixture, make_tenant
from worker.spool_mover import SpoolMover

NOW_MS = 1_800_000_000_000


@pytest.fixture
async def tenant(sessionmaker: async_sessionmaker[AsyncSession]) -> TenantFixture:
    return await make_tenant(sessionmaker)


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[FirehoseQueue]:
    redis = Redis.from_url(settings.require_redis_url())
    yield FirehoseQueue(redis, settings.queue_name)
    await redis.aclose()


async def spool(sessionmaker: async_sessionmaker[AsyncSession], *requests: QueuedRequest) -> list[bool]:
    async with sessionmaker() as session:
        added = [await FirehoseSpool(session).add(request) for request in requests]
        await session.commit()
    return added


async def spooled_ids(sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(SpooledRequest.request_id).where(SpooledRequest.tenant_id == tenant_id).order_by(SpooledRequest.id)
        )
        return list(rows)


async def forget_spool(sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str) -> None:
    async with sessionmaker() as session:
        await session.execute(delete(SpooledRequest).where(SpooledRequest.tenant_id == tenant_id))
        await session.commit()


def request(tenant: TenantFixture, request_id: str, *, priority: int, received_at_ms: int) -> QueuedRequest:
    return QueuedRequest(tenant.id, request_id, f'{{"id": "{request_id}"}}', received_at_ms, priority)


async def test_spooled_requests_reach_the_queue_by_priority_then_arrival(sessionmaker, tenant, queue) -> None:
    assert await spool(
        sessionmaker,
        request(tenant, "late-low", priority=900, received_at_ms=NOW_MS + 3),
        request(tenant, "early-low", priority=900, received_at_ms=NOW_MS + 1),
        request(tenant, "high", priority=10, received_at_ms=NOW_MS + 2),
    ) == [True, True, True]
    assert await spool(sessionmaker, request(tenant, "high", priority=10, received_at_ms=NOW_MS + 9)) == [False]

    assert await SpoolMover(sessionmaker, queue).move_all() >= 3  # the run's database is shared

    claimed = await queue.claim(limit=100, max_bytes=1 << 20, lease_ms=30_000)
    own = [work for work in claimed if work.tenant_id == tenant.id]
    assert [work.request_id for work in own] == ["high", "early-low", "late-low"]
    assert [work.received_at_ms for work in own] == [NOW_MS + 2, NOW_MS + 1, NOW_MS + 3]
    assert await spooled_ids(sessionmaker, tenant.id) == []
    await queue.ack([work.member for work in claimed])


async def test_a_row_stays_spooled_while_redis_refuses(settings, sessionmaker, tenant) -> None:
    await spool(sessionmaker, request(tenant, "kept", priority=5, received_at_ms=NOW_MS))
    unreachable = Redis.from_url("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(RedisConnectionError):
            await SpoolMover(sessionmaker, FirehoseQueue(unreachable, settings.queue_name)).move_batch()
        assert await spooled_ids(sessionmaker, tenant.id) == ["kept"]
        assert await spool_size(sessionmaker) >= 1
    finally:
        await unreachable.aclose()
        await forget_spool(sessionmaker, tenant.id)  # the run's database is shared: leave nothing to move


async def test_moving_a_request_that_is_already_queued_is_harmless(sessionmaker, tenant, queue) -> None:
    already = request(tenant, "twice", priority=5, received_at_ms=NOW_MS)
    assert await queue.enqueue_many([already]) == [True]
    await spool(sessionmaker, already)

    assert await SpoolMover(sessionmaker, queue).move_all() >= 1

    assert await spooled_ids(sessionmaker, tenant.id) == []
    claimed = await queue.claim(limit=10, max_bytes=1 << 20, lease_ms=30_000)
    assert [work.request_id for work in claimed if work.tenant_id == tenant.id] == ["twice"], "queued once"
    await queue.ack([work.member for work in claimed])
