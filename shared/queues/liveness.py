"""Worker liveness in Redis: who is alive right now, so work held by a dead worker is taken up at once.

Each worker process renews a short-lived key, `<queue>:worker:<worker id>`, every
HEARTBEAT_INTERVAL_SECONDS with a TTL of HEARTBEAT_TTL_MS. Work a worker claims records that
worker's id as its owner; another worker that finds the owner's key gone releases the work at once
(shared.queues.firehose does this for Firehose claims). A crash is so noticed within the TTL plus
one scan, and a long piece of work keeps its claim by the heartbeat, not by a long lease.

For any queue of claims: record `Heartbeat.worker_id` with each claim, and release the claims whose
owner `alive_workers` does not return (or, inside a Lua script, whose `liveness_key` is missing) --
but only while your own `Heartbeat.judges_liveness()`: right after a Redis outage every key may
have lapsed, live workers' too, until their next beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Collection

from redis.asyncio import Redis

from shared.tasks import cancel_and_wait
from shared.transient import is_transient_queue_error

logger = logging.getLogger(__name__)

HEARTBEAT_TTL_MS = 3000
HEARTBEAT_INTERVAL_SECONDS = 1.0


def liveness_key_prefix(queue_name: str) -> str:
    """The prefix of every worker's liveness key; the worker id follows it."""
    return f"{queue_name}:worker:"


def new_worker_id() -> str:
    """A worker id unique across hosts and restarts: host, process id and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat:
    """Keeps `<queue>:worker:<worker_id>` alive while the worker runs (start/stop)."""

    def __init__(
        self,
        redis: Redis,
        queue_name: str,
        worker_id: str | None = None,
        *,
        ttl_ms: int = HEARTBEAT_TTL_MS,
        interval_seconds: float = HEARTBEAT_INTERVAL_SECONDS,
    ) -> None:
        self.redis = redis
        self.worker_id = worker_id or new_worker_id()
        self.key = liveness_key_prefix(queue_name) + self.worker_id
        self.ttl_ms = ttl_ms
        self.interval_seconds = interval_seconds
        self._task: asyncio.Task[None] | None = None
        self._healthy_since: float | None = None  # monotonic time of the first beat of a healthy run
        self._last_orphan_scan: float | None = None  # monotonic time a sharer of this heartbeat last scanned

    async def beat(self) -> None:
        """Renew the liveness key once (raises when Redis cannot be reached)."""
        try:
            await self.redis.set(self.key, "1", px=self.ttl_ms)
        except BaseException:
            self._healthy_since = None
            raise
        if self._healthy_since is None:
            self._healthy_since = time.monotonic()

    def judges_liveness(self) -> bool:
        """Whether a missing key now means a dead worker: this heartbeat has been renewed without a
        failure for two intervals, so every live worker (beating each interval) had time to renew
        its own key after an outage."""
        healthy_since = self._healthy_since
        return healthy_since is not None and time.monotonic() - healthy_since >= 2 * self.interval_seconds

    def orphan_scan_due(self, interval_seconds: float) -> bool:
        """Whether to scan for dead workers' claims now, taking the turn if so: this heartbeat judges
        liveness and nobody sharing it (the consumers of one process) scanned in the last
        `interval_seconds`, so a process scans once an interval however many consumers it runs."""
        now = time.monotonic()
        last = self._last_orphan_scan
        if not self.judges_liveness() or (last is not None and now - last < interval_seconds):
            return False
        self._last_orphan_scan = now
        return True

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        """Beat once (raises when Redis cannot be reached: nothing may be claimed yet), then every
        `interval_seconds` in the background, riding out Redis outages. No-op when running."""
        if self._task is None:
            await self.beat()
            self._task = asyncio.create_task(self._beat_forever(), name="worker-heartbeat")

    async def stop(self) -> None:
        """Stop beating and remove the key: this worker's leftover claims are released at once."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        with contextlib.suppress(Exception):
            await self.redis.delete(self.key)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_seconds)
            try:
                await self.beat()
            except Exception as error:
                if not is_transient_queue_error(error):
                    logger.exception("worker heartbeat failed")
                else:
                    logger.debug("worker heartbeat not renewed: %s", error.__class__.__name__)


async def alive_workers(redis: Redis, queue_name: str, worker_ids: Collection[str]) -> set[str]:
    """The ids among `worker_ids` whose heartbeat is current (one round trip)."""
    ids = list(dict.fromkeys(worker_ids))
    if not ids:
        return set()
    prefix = liveness_key_prefix(queue_name)
    async with redis.pipeline(transaction=False) as pipe:
        for worker_id in ids:
            pipe.exists(prefix + worker_id)
        found = await pipe.execute()
    return {worker_id for worker_id, exists in zip(ids, found, strict=True) if exists}
