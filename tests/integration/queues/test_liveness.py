"""Worker liveness (shared/queues/liveness.py): who is alive is what the heartbeat keys say."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.queues.liveness import HEARTBEAT_TTL_MS, Heartbeat, alive_workers, liveness_key_prefix
from shared.settings import Settings


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.require_redis_url())
    yield client
    await client.aclose()


async def test_a_running_heartbeat_is_alive_and_a_stopped_one_is_not(settings: Settings, redis: Redis) -> None:
    first = Heartbeat(redis, settings.queue_name)
    second = Heartbeat(redis, settings.queue_name)
    await first.start()
    await second.start()
    assert first.worker_id != second.worker_id
    assert first.key == liveness_key_prefix(settings.queue_name) + first.worker_id
    assert 0 < await redis.pttl(first.key) <= HEARTBEAT_TTL_MS
    ids = [first.worker_id, second.worker_id, "never-started"]
    assert await alive_workers(redis, settings.queue_name, ids) == {first.worker_id, second.worker_id}

    await second.stop()
    assert await alive_workers(redis, settings.queue_name, ids) == {first.worker_id}
    await first.stop()
    assert await alive_workers(redis, settings.queue_name, ids) == set()


async def test_the_key_lives_on_only_while_the_heartbeat_renews_it(settings: Settings, redis: Redis) -> None:
    short = Heartbeat(redis, settings.queue_name, ttl_ms=300, interval_seconds=0.1)
    await short.start()
    try:
        await asyncio.sleep(1.0)  # three lifetimes of the key: renewed meanwhile
        assert await alive_workers(redis, settings.queue_name, [short.worker_id]) == {short.worker_id}
        short._task.cancel()  # the process freezes or dies: no more beats (its key is left behind)
        await asyncio.sleep(0.5)
        assert await alive_workers(redis, settings.queue_name, [short.worker_id]) == set()
    finally:
        await short.stop()


async def test_it_judges_others_only_after_beating_without_failure_for_two_intervals(
    settings: Settings, redis: Redis
) -> None:
    heartbeat = Heartbeat(redis, settings.queue_name, interval_seconds=0.2)
    assert not heartbeat.judges_liveness(), "never beat"
    await heartbeat.start()
    try:
        assert not heartbeat.judges_liveness(), "just back: live workers may not have renewed their keys yet"
        await asyncio.sleep(0.5)
        assert heartbeat.judges_liveness()
        unreachable = Redis.from_url("redis://127.0.0.1:1/0")
        heartbeat.redis = unreachable
        with pytest.raises(RedisConnectionError):
            await heartbeat.beat()
        assert not heartbeat.judges_liveness(), "Redis failed it: keys may lapse meanwhile"
        heartbeat.redis = redis
        await unreachable.aclose()
    finally:
        await heartbeat.stop()


async def test_consumers_sharing_a_heartbeat_take_one_orphan_scan_an_interval(
    settings: Settings, redis: Redis
) -> None:
    heartbeat = Heartbeat(redis, settings.queue_name, interval_seconds=0.1)
    assert not heartbeat.orphan_scan_due(0.3), "it does not judge liveness yet"
    await heartbeat.start()
    try:
        await asyncio.sleep(0.25)
        assert heartbeat.orphan_scan_due(0.3), "the first consumer takes the turn"
        assert not heartbeat.orphan_scan_due(0.3), "the second consumer of the process skips it"
        await asyncio.sleep(0.35)
        assert heartbeat.orphan_scan_due(0.3), "due again an interval later"
    finally:
        await heartbeat.stop()
