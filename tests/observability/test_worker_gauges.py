"""The worker's query-backed gauges against real Redis and PostgreSQL, and counting on commit."""

from __future__ import annotations

import socket
import uuid

import httpx
import pytest
from prometheus_client import Counter
from redis.asyncio import Redis
from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import SpooledRequest
from shared.observability.metrics import (
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    SPOOL_SIZE,
    WORKER_REGISTRY,
    count_after_commit,
)
from shared.observability.worker_metrics import (
    GaugeRefresher,
    MetricsServer,
    WorkerMetrics,
    queue_band_stats,
    resend_queue_size,
)
from shared.queues.firehose import FirehoseQueue, QueuedRequest
from shared.queues.jobs import priority_score
from shared.queues.spool import FirehoseSpool, spool_size
from shared.settings import Settings
from tests.factories import make_tenant
from tests.integration.admin_helpers import outbound_message

NOW_MS = 1_800_000_000_000


@pytest.fixture
async def redis(settings: Settings):
    client = Redis.from_url(settings.require_redis_url())
    yield client
    await client.aclose()


async def _pend(redis: Redis, queue: FirehoseQueue, member: str, priority: int, age_seconds: float) -> None:
    """A pending request of `priority` enqueued `age_seconds` before NOW_MS, scored as the proxy does."""
    await redis.zadd(queue.pending_key, {member: priority_score(priority, int(NOW_MS - age_seconds * 1000))})


# (priority, age in seconds) of each pending request -> expected (depth, oldest age) per band.
CASES = [
    pytest.param([], [("0-99", 0, 0.0), ("100-499", 0, 0.0), ("500-1000", 0, 0.0)], id="empty"),
    pytest.param(
        [(0, 5), (50, 120), (99, 30), (100, 1), (499, 600), (500, 10), (1000, 3600), (1000, 7)],
        [("0-99", 3, 120.0), ("100-499", 2, 600.0), ("500-1000", 3, 3600.0)],
        id="every band, oldest not the most urgent",
    ),
    pytest.param(
        [(1000, 0), (1000, 45)], [("0-99", 0, 0.0), ("100-499", 0, 0.0), ("500-1000", 2, 45.0)], id="unmapped only"
    ),
    pytest.param([(0, 86_000)], [("0-99", 1, 86_000.0), ("100-499", 0, 0.0), ("500-1000", 0, 0.0)], id="almost a day"),
]


@pytest.mark.parametrize(("pending", "expected"), CASES)
async def test_queue_depth_and_oldest_age_per_band(
    redis: Redis, settings: Settings, pending: list[tuple[int, float]], expected: list[tuple[str, int, float]]
) -> None:
    queue = FirehoseQueue(redis, settings.queue_name)
    for index, (priority, age_seconds) in enumerate(pending):
        await _pend(redis, queue, f"m-{index}", priority, age_seconds)
    stats = await queue_band_stats(redis, queue, now_ms=NOW_MS)
    assert [(s.band, s.depth) for s in stats] == [(band, depth) for band, depth, _ in expected]
    for actual, (_, _, age) in zip(stats, expected, strict=True):
        assert actual.oldest_age_seconds == pytest.approx(age, abs=0.01)


async def test_refresh_sets_the_gauges_from_the_queue(
    redis: Redis, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    queue = FirehoseQueue(redis, settings.queue_name)
    await queue.enqueue(tenant_id="t", request_id="r-1", body="{}", received_at_ms=NOW_MS, priority=200)
    await queue.enqueue(tenant_id="t", request_id="r-2", body="{}", received_at_ms=NOW_MS, priority=300)
    tenant = await make_tenant(sessionmaker)
    spooled_before = await spool_size(sessionmaker)
    async with sessionmaker() as session:
        spooled = QueuedRequest(tenant.id, f"r-{uuid.uuid4().hex}", "{}", NOW_MS, priority=10)
        assert await FirehoseSpool(session).add(spooled)
        await session.commit()
    await GaugeRefresher(redis, queue, sessionmaker).refresh()
    assert QUEUE_DEPTH.labels(priority="100-499")._value.get() == 2
    assert QUEUE_DEPTH.labels(priority="0-99")._value.get() == 0
    assert QUEUE_OLDEST_AGE.labels(priority="100-499")._value.get() >= 0
    assert SPOOL_SIZE._value.get() == spooled_before + 1
    async with sessionmaker() as session:  # leave the spool as found
        await session.execute(delete(SpooledRequest).where(SpooledRequest.request_id == spooled.request_id))
        await session.commit()


async def test_resend_queue_size_counts_retrying_messages(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessionmaker)
    before = await resend_queue_size(sessionmaker)
    async with sessionmaker() as session:
        session.add_all(
            [
                outbound_message(tenant.id, "retrying", customer_id="c-1"),
                outbound_message(tenant.id, "retrying", customer_id="c-2"),
                outbound_message(tenant.id, "queued", customer_id="c-3"),
                outbound_message(tenant.id, "failed", customer_id="c-4"),
            ]
        )
        await session.commit()
    assert await resend_queue_size(sessionmaker) - before == 2


async def test_counted_on_commit_only(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    counter = Counter("test_counted_on_commit", "a counter of this test", registry=None)
    async with sessionmaker() as session:
        await session.execute(text("SELECT 1"))
        count_after_commit(session, counter, 3)
        await session.rollback()
        assert counter._value.get() == 0
        await session.execute(text("SELECT 1"))
        count_after_commit(session, counter, 2)
        assert counter._value.get() == 0  # not before the commit
        await session.commit()
        assert counter._value.get() == 2
        await session.commit()  # nothing pending any more
        assert counter._value.get() == 2


async def test_metrics_server_serves_only_metrics(settings: Settings) -> None:
    server = MetricsServer(WORKER_REGISTRY, "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            scraped = await http.get("/metrics")
            assert scraped.status_code == 200
            assert scraped.headers["content-type"].startswith("text/plain; version=")
            assert 'loyalty_bridge_queue_depth{priority="0-99"}' in scraped.text
            assert (await http.get("/")).status_code == 404
            assert (await http.post("/metrics")).status_code == 405
    finally:
        await server.stop()


async def test_a_taken_metrics_port_does_not_stop_the_worker(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics = WorkerMetrics(settings.model_copy(update={"host": "127.0.0.1", "metrics_port": port}))
        await metrics.start()  # logged, not raised: the worker goes on without metrics
        await metrics.stop()
    [record] = [r for r in caplog.records if r.getMessage() == "metrics_server_unavailable"]
    assert vars(record)["port"] == port
