"""Moves spooled Firehose requests (shared.queues.spool) into the queue once Redis takes them again.

Every SPOOL_SCAN_SECONDS a worker looks at the spool; while it holds rows it moves them, a batch at
a time, in priority then arrival order: lock the oldest rows (SKIP LOCKED: workers share the work),
enqueue them (one round trip), delete them, commit. A row is deleted only after Redis acknowledged
its request; a crash in between leaves it spooled, and moving it again is harmless (the queue's
"already queued" check, then processed_request). Outages of either store are waited out.
"""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.logging import get_logger
from shared.queues.firehose import FirehoseQueue
from shared.queues.spool import FirehoseSpool
from shared.transient import (
    RetryDelays,
    call_retrying,
    is_transient_database_error,
    is_transient_queue_error,
)

logger = get_logger(__name__)

SPOOL_SCAN_SECONDS = 1.0
MOVE_BATCH_REQUESTS = 500
MOVE_BATCH_BYTES = 8 * 1024 * 1024
RETRY_DELAYS = RetryDelays(first_delay_seconds=0.5, max_delay_seconds=2.0)


def _store_unavailable(error: BaseException) -> bool:
    return is_transient_database_error(error) or is_transient_queue_error(error)


class SpoolMover:
    """Empties the spool into the Firehose queue (run one per worker process)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], queue: FirehoseQueue) -> None:
        self.sessionmaker = sessionmaker
        self.queue = queue
        self.moved = 0

    async def move_batch(self) -> int:
        """Move up to MOVE_BATCH_REQUESTS spooled requests into the queue; returns how many."""
        async with session_scope(self.sessionmaker) as session:
            spool = FirehoseSpool(session)
            batch = await spool.take_oldest(MOVE_BATCH_REQUESTS, MOVE_BATCH_BYTES)
            if not batch.ids:
                return 0
            # False for a request already queued: it is in the queue all the same.
            await self.queue.enqueue_many(batch.requests)
            await spool.remove(batch.ids)
        self.moved += len(batch.ids)
        logger.info("spooled_requests_queued", requests=len(batch.ids))
        return len(batch.ids)

    async def move_all(self) -> int:
        """Move batches until the spool is empty; returns how many requests were moved."""
        total = 0
        while moved := await self.move_batch():
            total += moved
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Every SPOOL_SCAN_SECONDS until `stop` is set, move what is spooled; ride out outages."""
        while not stop.is_set():
            with contextlib.suppress(Exception):  # raised only once `stop` is set
                await call_retrying(
                    "firehose spool mover", self.move_all, retry_on=_keep_moving, delays=RETRY_DELAYS, stop=stop
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SPOOL_SCAN_SECONDS)


def _keep_moving(error: BaseException) -> bool:
    """Retry everything: outages are waited out, and a bug is logged without stopping the mover."""
    if not _store_unavailable(error):
        logger.error("spool_mover_failed", exc_info=error)
    return True
