"""The worker's Firehose consumer: claims batches from the Firehose queue (shared.queues.firehose)
in priority order and applies each in one transaction (worker.inbound.batch).

- A claim is a lease of LEASE_SECONDS, renewed while the batch is being applied. A crashed
  worker's leases run out and its batches go back to the queue with their priority, where any
  worker takes them up again (every worker looks for expired leases each second): crashed work
  is re-run within LEASE_SECONDS + 1 s.
- PostgreSQL unavailable: the batch is kept (and its lease renewed) and retried with growing
  delays until it goes through; nothing is lost or reported as failed, however long the outage.
- Redis unavailable: the consumer waits and tries again; it never exits on it.
- Stopping: the batch in hand is finished (or, when cancelled, handed back at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.queues.firehose import FirehoseQueue, FirehoseWork
from shared.tenants.config import TenantConfigCache
from worker.inbound.batch import apply_firehose_batch
from worker.inbound.failures import DatabaseUnavailable

logger = logging.getLogger(__name__)

BATCH_MAX_REQUESTS = 200
BATCH_MAX_BYTES = 8 * 1024 * 1024
LEASE_SECONDS = 30
LEASE_RENEWAL_SECONDS = 5
# An idle consumer blocks on the queue's wake-up list; this bounds the wait (expired lease scans).
IDLE_WAIT_SECONDS = 1
EXPIRED_LEASE_SCAN_SECONDS = 1.0
RETRY_FIRST_DELAY_SECONDS = 0.5
RETRY_MAX_DELAY_SECONDS = 10.0


class FirehoseConsumer:
    """Applies queued Firehose requests, a batch at a time."""

    def __init__(
        self,
        queue: FirehoseQueue,
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant_configs: TenantConfigCache,
    ) -> None:
        self.queue = queue
        self.sessionmaker = sessionmaker
        self.tenant_configs = tenant_configs
        self.applied = 0
        self._last_expiry_scan = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Apply batches until `stop` is set, riding out Redis and PostgreSQL outages."""
        delay = RETRY_FIRST_DELAY_SECONDS
        while not stop.is_set():
            try:
                applied = await self.apply_next_batch()
            except Exception as exc:
                if isinstance(exc, RedisError | OSError | TimeoutError):
                    logger.warning("firehose queue unavailable (%s); retrying in %.1fs", exc.__class__.__name__, delay)
                else:  # a bug: the batch went back to the queue; keep the consumer alive
                    logger.exception("firehose consumer failed; retrying in %.1fs", delay)
                await _sleep_unless(stop, delay)
                delay = min(delay * 2, RETRY_MAX_DELAY_SECONDS)
                continue
            delay = RETRY_FIRST_DELAY_SECONDS
            if applied == 0:
                await self._idle(stop)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Wait for new work (woken as soon as some is queued) or for stop, at most IDLE_WAIT_SECONDS."""
        waiting = asyncio.ensure_future(self.queue.wait_for_work(IDLE_WAIT_SECONDS))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not waiting.done():
                waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            if waiting.done() and not waiting.cancelled():
                waiting.result()  # a Redis error surfaces in run()

    async def drain(self) -> int:
        """Apply every due request, then return how many were applied (burst workers, tests)."""
        await self.queue.requeue_expired()
        total = 0
        while applied := await self.apply_next_batch():
            total += applied
        return total

    async def apply_next_batch(self) -> int:
        """Claim one batch and apply it; returns its size (0: nothing due)."""
        await self._requeue_expired_leases()
        works = await self.queue.claim(
            limit=BATCH_MAX_REQUESTS, max_bytes=BATCH_MAX_BYTES, lease_ms=LEASE_SECONDS * 1000
        )
        if not works:
            return 0
        members = [work.member for work in works]
        renewing = asyncio.ensure_future(self._renew_leases(members))
        try:
            summary = await self._apply_until_done(works)
        except BaseException:
            # Stopping (cancelled) or a bug: hand the batch back now rather than at lease expiry.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.queue.release(members))
            raise
        finally:
            renewing.cancel()
        await self.queue.ack(members)
        self.applied += len(works)
        logger.info("firehose batch: %s", summary)
        return len(works)

    async def _apply_until_done(self, works: list[FirehoseWork]) -> str:
        delay = RETRY_FIRST_DELAY_SECONDS
        while True:
            try:
                return await apply_firehose_batch(self.sessionmaker, self.tenant_configs, works)
            except DatabaseUnavailable as exc:
                logger.warning("database unavailable (%s); batch of %d retried in %.1fs", exc, len(works), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY_SECONDS)

    async def _renew_leases(self, members: list[str]) -> None:
        while True:
            await asyncio.sleep(LEASE_RENEWAL_SECONDS)
            try:
                await self.queue.renew(members, lease_ms=LEASE_SECONDS * 1000)
            except (RedisError, OSError) as exc:
                logger.warning("could not renew firehose leases: %s", exc.__class__.__name__)

    async def _requeue_expired_leases(self) -> None:
        now = time.monotonic()
        if now - self._last_expiry_scan >= EXPIRED_LEASE_SCAN_SECONDS:
            self._last_expiry_scan = now
            if requeued := await self.queue.requeue_expired():
                logger.warning("%d firehose request(s) of a stopped worker queued again", requeued)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class ConsumerTask:
    """A consumer running in the background of a worker process."""

    def __init__(self, consumer: FirehoseConsumer) -> None:
        self.consumer = consumer
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.consumer.run(self._stop))

    async def stop(self, timeout_seconds: float) -> None:
        """Let the batch in hand finish (up to `timeout_seconds`), then cancel."""
        if self._task is None:
            return
        self._stop.set()
        done, _ = await asyncio.wait({self._task}, timeout=timeout_seconds)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        elif not self._task.cancelled() and self._task.exception() is not None:
            logger.error("firehose consumer ended with %r", self._task.exception())
        self._task = None
