"""The worker's metrics: its `/metrics` HTTP server (METRICS_PORT) and the gauges that need a query.

Queue depth and oldest age per priority band (Redis), the resend queue size and the spool size
(PostgreSQL) are refreshed by a background task every GAUGE_REFRESH_SECONDS, not at scrape time: a
scrape only renders the registry, and several Prometheus servers scraping cost no queries. The
server runs on the worker's event loop, so a worker whose loop is stuck stops answering its probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.db import create_engine, create_sessionmaker
from shared.logging import get_logger
from shared.models import OutboundMessage
from shared.observability.metrics import (
    OUTBOUND_RESEND_QUEUE_SIZE,
    PRIORITY_BANDS,
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    SPOOL_SIZE,
    WORKER_REGISTRY,
)
from shared.queues.firehose import FirehoseQueue
from shared.queues.jobs import MAX_PRIORITY, PRIORITY_STEP_MS, create_redis
from shared.queues.spool import spool_size
from shared.settings import Settings
from shared.tasks import cancel_and_wait
from shared.vocabulary import OutboundStatus

logger = get_logger(__name__)

GAUGE_REFRESH_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 2.0
# Clock skew allowed between the proxies that score queued requests and this worker.
CLOCK_SKEW_MARGIN_MS = 60_000
MAX_REQUEST_HEAD_BYTES = 8192
REQUEST_READ_TIMEOUT_SECONDS = 5.0

# A pending request's score is its enqueue time (ms) minus (MAX_PRIORITY - priority) days
# (shared.queues.jobs.priority_score), so, for requests younger than a day, the whole days between
# `now` and the score give its priority. Per band (ARGV: now + margin, day ms, max priority, then
# lowest and highest priority of each band): the count, and the earliest enqueue time (ms; -1 when
# empty) over the oldest request of each priority in the band. Requests older than a day count in
# a more urgent band (the first band takes everything older).
_BAND_STATS = """
local now, day, max_priority = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local function upper(priority) return now - (max_priority - priority) * day end
local results = {}
for i = 4, #ARGV, 2 do
    local lowest, highest = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
    local low = '(' .. tostring(upper(lowest - 1))
    if i == 4 then low = '-inf' end
    local count = redis.call('zcount', KEYS[1], low, tostring(upper(highest)))
    local earliest = -1
    if count > 0 then
        for priority = lowest, highest do
            local from = '(' .. tostring(upper(priority - 1))
            if i == 4 and priority == lowest then from = '-inf' end
            local to = tostring(upper(priority))
            local first = redis.call('zrangebyscore', KEYS[1], from, to, 'WITHSCORES', 'LIMIT', 0, 1)
            if #first == 2 then
                local enqueued = tonumber(first[2]) + (max_priority - priority) * day
                if earliest < 0 or enqueued < earliest then earliest = enqueued end
            end
        end
    end
    results[#results + 1] = tostring(count)
    results[#results + 1] = tostring(earliest)
end
return results
"""


@dataclass(frozen=True)
class BandStats:
    """Pending requests of one priority band and the age of the oldest (0 when none)."""

    band: str
    depth: int
    oldest_age_seconds: float


async def queue_band_stats(redis: Redis, queue: FirehoseQueue, now_ms: float | None = None) -> list[BandStats]:
    """Depth and oldest age of the Firehose queue's pending requests per priority band (one round trip)."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    args: list[float | int] = [now_ms + CLOCK_SKEW_MARGIN_MS, PRIORITY_STEP_MS, MAX_PRIORITY]
    for _, lowest, highest in PRIORITY_BANDS:
        args += [lowest, highest]
    flat: list[Any] = await redis.register_script(_BAND_STATS)(keys=[queue.pending_key], args=args)
    stats = []
    for (band, _, _), index in zip(PRIORITY_BANDS, range(0, len(flat), 2), strict=True):
        depth, earliest_ms = int(float(flat[index])), float(flat[index + 1])
        age = max(now_ms - earliest_ms, 0.0) / 1000 if earliest_ms >= 0 else 0.0
        stats.append(BandStats(band, depth, age))
    return stats


async def resend_queue_size(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Outbound messages waiting for a resend (`retrying`), all tenants."""
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(OutboundMessage).where(OutboundMessage.status == OutboundStatus.RETRYING)
        )
    return int(count or 0)


class GaugeRefresher:
    """Refreshes the query-backed gauges every GAUGE_REFRESH_SECONDS; outages only log."""

    def __init__(self, redis: Redis, queue: FirehoseQueue, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.redis = redis
        self.queue = queue
        self.sessionmaker = sessionmaker

    async def refresh(self) -> None:
        """Query once and set the gauges (each source independently: one outage keeps the other)."""
        try:
            for stats in await queue_band_stats(self.redis, self.queue):
                QUEUE_DEPTH.labels(priority=stats.band).set(stats.depth)
                QUEUE_OLDEST_AGE.labels(priority=stats.band).set(stats.oldest_age_seconds)
        except Exception as exc:
            logger.warning("queue_gauges_refresh_failed", error=exc.__class__.__name__)
        try:
            OUTBOUND_RESEND_QUEUE_SIZE.set(await resend_queue_size(self.sessionmaker))
            SPOOL_SIZE.set(await spool_size(self.sessionmaker))
        except Exception as exc:
            logger.warning("database_gauges_refresh_failed", error=exc.__class__.__name__)

    async def run_forever(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(GAUGE_REFRESH_SECONDS)


class MetricsServer:
    """A minimal HTTP/1.1 server for `GET /metrics` on the event loop (one response per connection)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]  # the real one when asked for port 0

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_READ_TIMEOUT_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
            method, path = _request_line(head)
            if method not in ("GET", "HEAD"):
                status, content_type, body = "405 Method Not Allowed", "text/plain", b"method not allowed\n"
            elif path.split("?", 1)[0] == "/metrics":
                status, content_type, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
            else:
                status, content_type, body = "404 Not Found", "text/plain", b"not found; try /metrics\n"
            headers = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(headers.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass  # a client that sends nothing usable gets nothing
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _request_line(head: bytes) -> tuple[str, str]:
    if len(head) > MAX_REQUEST_HEAD_BYTES:
        raise ValueError("request head too large")
    method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    return method, path


class WorkerMetrics:
    """The worker process's metrics: the server on METRICS_PORT and the gauge refresher, with
    their own Redis client and a one-connection database pool (independent of arq's restarts)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server = MetricsServer(WORKER_REGISTRY, settings.host, settings.metrics_port)
        self._engine: AsyncEngine | None = None
        self._redis: Redis | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve /metrics and start refreshing the gauges. A port already in use is logged, not
        fatal: the worker's work matters more than its metrics (a probe on /metrics notices)."""
        try:
            await self.server.start()
        except OSError as exc:
            logger.error("metrics_server_unavailable", port=self.settings.metrics_port, error=str(exc))
        else:
            logger.info("metrics_server_started", host=self.settings.host, port=self.server.port)
        self._engine = create_engine(self.settings, application_name="loyalty-bridge-worker-metrics", pool_size=1)
        self._redis = create_redis(
            self.settings,
            connect_timeout_seconds=REDIS_TIMEOUT_SECONDS,
            socket_timeout_seconds=REDIS_TIMEOUT_SECONDS,
        )
        refresher = GaugeRefresher(
            self._redis, FirehoseQueue(self._redis, self.settings.queue_name), create_sessionmaker(self._engine)
        )
        self._task = asyncio.ensure_future(refresher.run_forever())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        await self.server.stop()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
