"""The worker process's own rules: crashed work taken up again soon (arq's in-progress keys, leases
renewed while a job runs; the Firehose consumer's claims, owned by a heartbeat); burst workers that
stop although cron jobs keep coming; cron job ids scoped by queue."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis
from arq.cron import cron
from arq.worker import func
from redis.asyncio import Redis

import worker.main as worker_main
from shared.db import create_engine, create_sessionmaker
from shared.inbound.customers import CustomerRepository
from shared.queues.firehose import FirehoseQueue, QueuedRequest
from shared.queues.jobs import deserialize_job, serialize_job
from shared.queues.liveness import Heartbeat
from shared.settings import Settings, plain_database_url
from shared.tenants.config import TenantConfigCache
from tests.factories import make_tenant
from tests.inbound_helpers import custom_event, event_request, post_firehose, refresh_configs
from worker.inbound.consumer import FirehoseConsumer
from worker.jobs import JOB_FUNCTIONS
from worker.main import build_worker, run_worker

IN_PROGRESS_PREFIX = "arq:in-progress:"


async def until(probe: Callable[[], Awaitable[Any]], expected: bool, timeout: float = 10.0) -> None:
    """Wait (bounded) until `await probe()` is truthy or falsy as expected."""
    async with asyncio.timeout(timeout):
        while bool(await probe()) is not expected:
            await asyncio.sleep(0.05)


@pytest.fixture
async def mapped_tenant(app, sessionmaker):
    tenant = await make_tenant(
        sessionmaker,
        inbound={"auto_subscribe": True},
        inbound_mappings=[{"loyalty_event": "x", "event_type": "custom_event"}],
    )
    await refresh_configs(app)
    return tenant


@pytest.fixture
async def redis(settings: Settings):
    client = Redis.from_url(settings.require_redis_url())
    yield client
    await client.aclose()


async def test_expired_claim_of_a_dead_worker_is_queued_again_with_its_priority(
    client, settings, mapped_tenant, redis, sessionmaker, drain_queue
) -> None:
    queue = FirehoseQueue(redis, settings.queue_name)
    payloads = [event_request(mapped_tenant, custom_event("x"), customer=f"C-{n}") for n in range(3)]
    for payload in payloads:
        assert (await post_firehose(client, payload)).status_code == 200
    scores = {member.decode(): score for member, score in await redis.zrange(queue.pending_key, 0, -1, withscores=True)}

    # A worker claims two requests and dies without acknowledging them.
    claimed = await queue.claim(limit=2, max_bytes=1 << 20, lease_ms=200)
    assert [work.member for work in claimed] == list(scores)[:2]
    assert await queue.requeue_orphaned() == 0, "not before the lease is over"
    await asyncio.sleep(0.3)
    assert await queue.requeue_orphaned() == 2
    assert {
        member.decode(): score for member, score in await redis.zrange(queue.pending_key, 0, -1, withscores=True)
    } == scores

    await drain_queue()
    assert await queue.backlog() == 0
    async with sessionmaker() as session:
        assert [
            len(await CustomerRepository(session, mapped_tenant.id).ledger_page(f"C-{n}", limit=5)) for n in range(3)
        ] == [1, 1, 1]


async def hold_request(settings: Settings, tenant_id: str, request_id: str) -> tuple[asyncpg.Connection, Any]:
    """Hold the request's processed_request row in an open transaction: its batch waits on it."""
    blocker = await asyncpg.connect(plain_database_url(settings.require_database_url()))
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute(
        "INSERT INTO processed_request (tenant_id, request_id) VALUES ($1, $2)", tenant_id, request_id
    )
    return blocker, transaction


async def test_a_long_batch_keeps_its_claim_while_its_worker_is_alive(
    client, settings, mapped_tenant, redis, sessionmaker
) -> None:
    payload = event_request(mapped_tenant, custom_event("x"), customer="C-lease")
    assert (await post_firehose(client, payload)).status_code == 200
    queue = FirehoseQueue(redis, settings.queue_name)
    member = queue.member(mapped_tenant.id, payload["id"])
    blocker, transaction = await hold_request(settings, mapped_tenant.id, payload["id"])
    consumer_redis = Redis.from_url(settings.require_redis_url())
    engine = create_engine(settings, application_name="tests-consumer")
    consumer_sessionmaker = create_sessionmaker(engine)
    configs = TenantConfigCache(consumer_sessionmaker, 1)
    await configs.refresh()
    # A heartbeat of half a second: the batch below outlives it several times over.
    heartbeat = Heartbeat(consumer_redis, settings.queue_name, ttl_ms=500, interval_seconds=0.1)
    consumer = FirehoseConsumer(
        FirehoseQueue(consumer_redis, settings.queue_name), consumer_sessionmaker, configs, heartbeat=heartbeat
    )
    applying = asyncio.create_task(consumer.apply_next_batch())
    try:
        await until(lambda: redis.zscore(queue.claimed_key, member), True)
        assert await queue.claim_owners() == {member: heartbeat.worker_id}
        await asyncio.sleep(1.5)  # three heartbeat lifetimes: only the renewed heartbeat keeps the claim
        assert await queue.requeue_orphaned() == 0
        assert await redis.zscore(queue.claimed_key, member) is not None, "still claimed"
        await transaction.rollback()
        assert await asyncio.wait_for(applying, timeout=10) == 1
        assert await queue.backlog() == 0, "acknowledged once applied"
        assert await queue.claim_owners() == {}
    finally:
        await heartbeat.stop()
        await blocker.close()
        await consumer_redis.aclose()
        await engine.dispose()


async def test_claims_of_a_worker_whose_heartbeat_is_gone_are_released_at_once(settings, redis) -> None:
    queue = FirehoseQueue(redis, settings.queue_name)
    await queue.enqueue_many([QueuedRequest("t-1", f"r{n}", "{}", 0, priority=n) for n in range(3)])
    pending_scores = dict(await redis.zrange(queue.pending_key, 0, -1, withscores=True))
    alive = Heartbeat(redis, settings.queue_name)
    await alive.start()
    try:
        hour_ms = 3_600_000  # the lease is irrelevant for an owned claim
        [live] = await queue.claim(limit=1, max_bytes=1 << 20, lease_ms=hour_ms, owner=alive.worker_id)
        dead_claims = await queue.claim(limit=2, max_bytes=1 << 20, lease_ms=hour_ms, owner="crashed-worker")
        assert await queue.requeue_orphaned() == 2, "the dead owner's claims, not the live one's"
        assert {member for member, _ in await redis.zrange(queue.pending_key, 0, -1, withscores=True)} == {
            claim.member.encode() for claim in dead_claims
        }
        assert await queue.claim_owners() == {live.member: alive.worker_id}
    finally:
        await alive.stop()  # a stopping worker removes its key: what it still holds is released too
    assert await queue.requeue_orphaned() == 1
    assert dict(await redis.zrange(queue.pending_key, 0, -1, withscores=True)) == pending_scores, "priorities kept"
    assert await queue.claim_owners() == {}


RELEASE_SLOW_JOB = asyncio.Event()


async def _slow_job(ctx: dict[str, Any]) -> str:
    """An arq job that runs until the test lets it finish."""
    await RELEASE_SLOW_JOB.wait()
    return "done"


async def test_arq_in_progress_lease_is_renewed_while_a_job_runs(
    settings: Settings, redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_main, "IN_PROGRESS_LEASE_SECONDS", 1)
    monkeypatch.setattr(worker_main, "LEASE_RENEWAL_SECONDS", 0.2)
    RELEASE_SLOW_JOB.clear()
    slow = func(_slow_job, name="slow_job", timeout=60, keep_result=0)
    monkeypatch.setattr(worker_main, "JOB_FUNCTIONS", [*JOB_FUNCTIONS, slow])
    stop = asyncio.Event()
    running = asyncio.create_task(run_worker(settings, stop=stop, handle_signals=False))
    try:
        pool = ArqRedis(
            connection_pool=redis.connection_pool, job_serializer=serialize_job, job_deserializer=deserialize_job
        )
        job = await pool.enqueue_job("slow_job", _queue_name=settings.queue_name, _job_id=f"{settings.queue_name}:slow")
        assert job is not None
        in_progress_key = IN_PROGRESS_PREFIX + job.job_id
        await until(lambda: redis.exists(in_progress_key), True)
        await asyncio.sleep(2.5)  # well past the 1 s lease: only renewals keep the key
        assert await redis.exists(in_progress_key), "the running job's lease was renewed"
        assert 0 < await redis.pttl(in_progress_key) <= 1000
        RELEASE_SLOW_JOB.set()
        await until(lambda: redis.exists(in_progress_key), False)
    finally:
        RELEASE_SLOW_JOB.set()
        stop.set()
        await asyncio.wait_for(running, timeout=30)


CRON_RUNS: list[str] = []


async def _every_second(ctx: dict[str, Any]) -> None:
    """A cron job that runs every second."""
    CRON_RUNS.append(ctx["job_id"])


async def test_burst_worker_stops_although_a_cron_job_runs_every_second(settings: Settings) -> None:
    worker = build_worker(settings, burst=True, handle_signals=False)
    every_second = cron(_every_second, second=None, run_at_startup=True, unique=True)
    worker.cron_jobs.append(every_second)
    worker.functions[every_second.name] = every_second
    CRON_RUNS.clear()
    try:
        await asyncio.wait_for(worker.main(), timeout=30)
    finally:
        await worker.close()
    assert len(CRON_RUNS) == 1, "the start-up run happened, and nothing was scheduled after it"


def test_cron_job_ids_are_scoped_by_queue(settings: Settings) -> None:
    mine = build_worker(settings, burst=True, handle_signals=False)
    other = build_worker(settings.model_copy(update={"queue_name": "another"}), burst=True, handle_signals=False)
    mine_names = {job.name for job in mine.cron_jobs}
    other_names = {job.name for job in other.cron_jobs}
    assert mine_names and not mine_names & other_names
    assert all(name.startswith(settings.queue_name + ":") for name in mine_names)
    assert all(job.next_run is None for job in mine.cron_jobs), "each worker has its own schedule"
