"""The worker's Firehose consumer: claims batches from the Firehose queue (shared.queues.firehose)
in priority order and applies each in one transaction (worker.inbound.batch).

- A claim is owned by this worker (its id, with a heartbeat: shared.queues.liveness) and lasts as
  long as the worker is alive, however long the batch takes. A crashed worker's heartbeat expires
  within HEARTBEAT_TTL_MS and its batches go back to the queue with their priority at the next
  scan of any worker (each ORPHAN_SCAN_SECONDS): crashed work is taken up within ~4 s. Applying
  a batch twice is harmless (processed_request skips what was applied).
- PostgreSQL unavailable: the batch is kept and retried with growing delays (shared.transient)
  until it goes through; nothing is lost or reported as failed, however long the outage.
- Redis unavailable: the consumer waits and tries again (the same policy); it never exits on it.
- Stopping: the batch in hand is finished (or, when cancelled, handed back at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.errors import DatabaseUnavailable
from shared.logging import bind_log_context, get_logger, unbind_log_context
from shared.observability.metrics import INBOUND_PROCESSING_FAILURES, record_inbound_batch
from shared.observability.tracing import record_applied_spans, tracing_enabled
from shared.queues.firehose import FirehoseQueue, QueuedRequest
from shared.queues.liveness import Heartbeat
from shared.tenants.config import TenantConfigCache
from shared.transient import RetryDelays, call_retrying, is_transient_queue_error
from worker.inbound.batch import BatchOutcome, apply_firehose_batch

logger = get_logger(__name__)

BATCH_MAX_REQUESTS = 200
BATCH_MAX_BYTES = 8 * 1024 * 1024
# Claims carry an owner; this lease only matters for a claim whose owner entry is missing.
FALLBACK_LEASE_SECONDS = 30
# An idle consumer blocks on the queue's wake-up list; this bounds the wait (orphan scans).
IDLE_WAIT_SECONDS = 1
ORPHAN_SCAN_SECONDS = 1.0
# Outage waits grow up to these maxima: a store that is back is used again within that long.
DATABASE_RETRY_DELAYS = RetryDelays(first_delay_seconds=0.5, max_delay_seconds=5.0)
QUEUE_RETRY_DELAYS = RetryDelays(first_delay_seconds=0.5, max_delay_seconds=2.0)


class FirehoseConsumer:
    """Applies queued Firehose requests, a batch at a time."""

    def __init__(
        self,
        queue: FirehoseQueue,
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant_configs: TenantConfigCache,
        *,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        """`heartbeat`: the worker process's (run_worker starts and stops it); without one the
        consumer keeps a heartbeat of its own while it runs."""
        self.queue = queue
        self.sessionmaker = sessionmaker
        self.tenant_configs = tenant_configs
        self.heartbeat = heartbeat or Heartbeat(queue.redis, queue.queue_name)
        self._owns_heartbeat = heartbeat is None
        self.applied = 0
        self._stop: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Apply batches until `stop` is set, riding out Redis and PostgreSQL outages."""
        self._stop = stop
        try:
            while not stop.is_set():
                with contextlib.suppress(Exception):  # raised only once `stop` is set
                    await call_retrying(
                        "firehose consumer",
                        lambda: self._apply_or_idle(stop),
                        retry_on=_keep_consuming,
                        delays=QUEUE_RETRY_DELAYS,
                        stop=stop,
                    )
        finally:
            await self.close()

    async def _apply_or_idle(self, stop: asyncio.Event) -> None:
        if await self.apply_next_batch() == 0:
            await self._idle(stop)

    async def close(self) -> None:
        """Stop the consumer's own heartbeat (if it has one): its leftover claims are released."""
        if self._owns_heartbeat:
            await self.heartbeat.stop()

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
                waiting.result()  # a Redis error is retried by run()

    async def drain(self) -> int:
        """Apply every due request, then return how many were applied (burst workers, tests)."""
        try:
            await self.queue.requeue_orphaned()
            total = 0
            while applied := await self.apply_next_batch():
                total += applied
            return total
        finally:
            await self.close()

    async def apply_next_batch(self) -> int:
        """Claim one batch and apply it; returns its size (0: nothing due)."""
        await self.heartbeat.start()  # claims need a live owner (no-op once it beats)
        await self._requeue_orphaned_claims()
        works = await self.queue.claim(
            limit=BATCH_MAX_REQUESTS,
            max_bytes=BATCH_MAX_BYTES,
            lease_ms=FALLBACK_LEASE_SECONDS * 1000,
            owner=self.heartbeat.worker_id,
        )
        if not works:
            return 0
        members = [work.member for work in works]
        bind_log_context(batch_id=uuid.uuid4().hex[:16])
        started_ns = time.time_ns()
        try:
            summary = await self._apply_until_done(works)
        except BaseException:
            # Stopping (cancelled) or a bug: hand the batch back now.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.queue.release(members))
            raise
        await self.queue.ack(members)
        self.applied += len(works)
        _observe_batch(works, summary, started_ns)
        return len(works)

    async def _apply_until_done(self, claimed: list[QueuedRequest]) -> BatchOutcome:
        """Apply the batch, waiting out a PostgreSQL outage of any length (the claim is held); when
        the consumer is stopped meanwhile, the batch goes back to the queue."""
        return await call_retrying(
            f"firehose batch of {len(claimed)}",
            lambda: apply_firehose_batch(self.sessionmaker, self.tenant_configs, claimed),
            retry_on=_database_unavailable,
            delays=DATABASE_RETRY_DELAYS,
            stop=self._stop,
        )

    async def _requeue_orphaned_claims(self) -> None:
        # Once a second per process (its consumers share the heartbeat), and not right after a Redis
        # outage: live workers' keys may not be back yet.
        if self.heartbeat.orphan_scan_due(ORPHAN_SCAN_SECONDS) and (requeued := await self.queue.requeue_orphaned()):
            logger.warning("firehose_orphaned_requests_requeued", requests=requeued)


def _database_unavailable(error: BaseException) -> bool:
    if isinstance(error, DatabaseUnavailable):
        INBOUND_PROCESSING_FAILURES.inc()
        return True
    return False


def _keep_consuming(error: BaseException) -> bool:
    """Retry everything: a Redis outage is waited out; a bug (the batch went back to the queue) is
    logged and must not stop the consumer either."""
    if not is_transient_queue_error(error):
        INBOUND_PROCESSING_FAILURES.inc()
        logger.error("firehose_consumer_failed", exc_info=error)
    return True


def _observe_batch(claimed: list[QueuedRequest], outcome: BatchOutcome, started_ns: int) -> None:
    """Metrics, the batch's log line and (tracing on) each request's `firehose.apply` span."""
    ended_ns = time.time_ns()
    record_inbound_batch(
        requests=outcome.requests,
        ledger_events=outcome.ledger_events_recorded,
        echo_events_dropped=outcome.echo_events_dropped,
        failed_over=outcome.one_by_one,
    )
    logger.info(
        "firehose_batch_applied", **outcome.as_log_fields(), duration_ms=round((ended_ns - started_ns) / 1e6, 1)
    )
    unbind_log_context("batch_id")
    if tracing_enabled():
        spans: list[tuple[str | None, dict[str, str | int]]] = [
            (request.traceparent, {"tenant.id": request.tenant_id, "firehose.request_id": request.request_id})
            for request in claimed
        ]
        record_applied_spans(spans, started_ns=started_ns, ended_ns=ended_ns)


class ConsumerTask:
    """A consumer running in the background of a worker process."""

    def __init__(self, consumer: FirehoseConsumer, stop: asyncio.Event | None = None) -> None:
        """`stop`: the process's stop event, so the consumer starts finishing as soon as it is set."""
        self.consumer = consumer
        self._stop = stop or asyncio.Event()
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
            logger.error("firehose_consumer_ended", error=repr(self._task.exception()))
        self._task = None
