"""The Firehose queue on a real Redis: dedupe, priority order, byte budget, leases, release, ack,
and grouped enqueues (the job value's encoding itself: tests/unit/queues/test_firehose.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.queues.firehose import FirehoseQueue, GroupedEnqueuer, QueuedRequest
from shared.queues.jobs import UNMAPPED_PRIORITY
from shared.settings import Settings


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[FirehoseQueue]:
    redis = Redis.from_url(settings.require_redis_url())
    queue = FirehoseQueue(redis, settings.queue_name)
    yield queue
    # Leave nothing behind in the shared Redis (acknowledged jobs are deleted already).
    members = [*await redis.zrange(queue.pending_key, 0, -1), *await redis.zrange(queue.claimed_key, 0, -1)]
    await redis.delete(queue.pending_key, queue.claimed_key, *(queue.job_prefix + m.decode() for m in members))
    await redis.aclose()


def request(request_id: str, priority: int = 10, body: str = '{"x": 1}') -> QueuedRequest:
    return QueuedRequest("t-1", request_id, body, 1714592744066, priority)


async def test_claims_follow_priority_then_arrival_and_carry_the_job(queue: FirehoseQueue) -> None:
    for request_id, priority in [("late", UNMAPPED_PRIORITY), ("a", 50), ("b", 1), ("c", 50), ("d", 1)]:
        assert await queue.enqueue_many([request(request_id, priority, body=f'{{"id": "{request_id}"}}')]) == [True]
    claimed = await queue.claim(limit=10, max_bytes=1 << 20, lease_ms=30_000)
    assert [work.member for work in claimed] == [queue.member("t-1", rid) for rid in ("b", "d", "a", "c", "late")]
    assert (claimed[0].tenant_id, claimed[0].body, claimed[0].received_at_ms) == ("t-1", '{"id": "b"}', 1714592744066)
    assert await queue.claim(limit=10, max_bytes=1 << 20, lease_ms=30_000) == []


async def test_a_request_is_queued_once_while_known(queue: FirehoseQueue) -> None:
    assert await queue.enqueue_many([request("r1"), request("r1"), request("r2")]) == [True, False, True]
    [first, second] = await queue.claim(limit=10, max_bytes=1 << 20, lease_ms=30_000)
    assert await queue.enqueue_many([request("r1")]) == [False], "being applied"
    await queue.ack([first.member, second.member])
    assert await queue.backlog() == 0
    assert await queue.enqueue_many([request("r1")]) == [True], "forgotten once applied"


async def test_claim_stops_at_the_byte_budget_but_takes_at_least_one(queue: FirehoseQueue) -> None:
    await queue.enqueue_many([request(f"r{n}", body="x" * 1000) for n in range(5)])
    assert len(await queue.claim(limit=10, max_bytes=100, lease_ms=30_000)) == 1
    assert len(await queue.claim(limit=10, max_bytes=2500, lease_ms=30_000)) == 2
    assert len(await queue.claim(limit=1, max_bytes=1 << 20, lease_ms=30_000)) == 1


async def test_release_and_expiry_restore_the_original_priority(queue: FirehoseQueue) -> None:
    await queue.enqueue_many([request("first", 1), request("second", 900)])
    scores = dict(await queue.redis.zrange(queue.pending_key, 0, -1, withscores=True))
    claimed = await queue.claim(limit=1, max_bytes=1 << 20, lease_ms=30_000)
    assert await queue.release([work.member for work in claimed]) == 1
    assert dict(await queue.redis.zrange(queue.pending_key, 0, -1, withscores=True)) == scores

    # A claim without an owner (no heartbeat) is held for its lease, then given back.
    claimed = await queue.claim(limit=1, max_bytes=1 << 20, lease_ms=300)
    assert await queue.requeue_orphaned() == 0, "leased"
    await asyncio.sleep(0.35)
    assert await queue.requeue_orphaned() == 1
    assert dict(await queue.redis.zrange(queue.pending_key, 0, -1, withscores=True)) == scores


async def test_grouped_enqueues_each_get_their_own_answer(queue: FirehoseQueue) -> None:
    enqueuer = GroupedEnqueuer(queue)
    ids = [str(uuid.uuid4()) for _ in range(50)]
    results = await asyncio.gather(*(enqueuer.enqueue(request(rid)) for rid in [*ids, ids[0]]))
    assert results == [True] * 50 + [False]
    claimed = await queue.claim(limit=100, max_bytes=1 << 30, lease_ms=30_000)
    assert [work.member for work in claimed] == [queue.member("t-1", rid) for rid in ids], "arrival order kept"


async def test_grouped_enqueue_failure_reaches_every_caller(settings: Settings) -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    enqueuer = GroupedEnqueuer(FirehoseQueue(redis, settings.queue_name))
    try:
        results = await asyncio.gather(*(enqueuer.enqueue(request(f"r{n}")) for n in range(3)), return_exceptions=True)
    finally:
        await redis.aclose()
    assert all(isinstance(result, RedisError) for result in results), results


async def test_requests_arriving_during_a_round_trip_leave_together_in_order(queue: FirehoseQueue) -> None:
    enqueuer = GroupedEnqueuer(queue, max_batch=7)
    ids = [str(uuid.uuid4()) for _ in range(40)]
    waves = []
    for wave in range(4):  # later waves join while an earlier round trip is still in flight
        waves.append(asyncio.gather(*(enqueuer.enqueue(request(rid)) for rid in ids[wave * 10 : wave * 10 + 10])))
        await asyncio.sleep(0)
    results = [flag for wave_results in await asyncio.gather(*waves) for flag in wave_results]
    assert results == [True] * 40
    claimed = await queue.claim(limit=100, max_bytes=1 << 30, lease_ms=30_000)
    assert [work.member for work in claimed] == [queue.member("t-1", rid) for rid in ids], "arrival order kept"


async def test_a_redis_that_never_answers_times_out_every_caller(settings: Settings) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the commands, never answers
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=30)
    enqueuer = GroupedEnqueuer(FirehoseQueue(redis, settings.queue_name), timeout_seconds=0.2)
    try:
        results = await asyncio.gather(*(enqueuer.enqueue(request(f"r{n}")) for n in range(3)), return_exceptions=True)
    finally:
        await redis.aclose()
        server.close()
    assert all(isinstance(result, TimeoutError) for result in results), results


async def test_two_round_trips_are_in_flight_at_most_and_the_rest_wait(settings: Settings) -> None:
    connections = 0

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A Redis that completes the client's handshake, then never answers a command."""
        nonlocal connections
        connections += 1  # one connection per round trip in flight (the pool's are all busy)
        while data := await reader.read(65536):
            writer.write(b"+OK\r\n" * data.count(b"SETINFO"))
            await writer.drain()
        writer.close()

    async def until_connections(count: int) -> None:
        for _ in range(500):
            if connections >= count:
                return
            await asyncio.sleep(0.01)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=30)
    enqueuer = GroupedEnqueuer(FirehoseQueue(redis, settings.queue_name), timeout_seconds=1.5)
    try:
        first = asyncio.ensure_future(enqueuer.enqueue(request("r1")))
        await until_connections(1)
        second = asyncio.ensure_future(enqueuer.enqueue(request("r2")))  # leaves at once, beside the first
        await until_connections(2)
        second_left_beside_first = connections == 2 and not first.done()
        waiting = [asyncio.ensure_future(enqueuer.enqueue(request(f"r{n}"))) for n in (3, 4)]
        await asyncio.sleep(0.2)
        in_flight_meanwhile = connections
        results = await asyncio.gather(first, second, *waiting, return_exceptions=True)
    finally:
        await redis.aclose()
        server.close()
    assert second_left_beside_first, "the second request waited for the first round trip"
    assert in_flight_meanwhile == 2, "a third round trip started while two were in flight"
    assert connections == 3, "the two waiting requests left together once a round trip ended"
    assert all(isinstance(result, TimeoutError) for result in results), results
