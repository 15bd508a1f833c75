"""Retention: purge incoming error log entries and Firehose idempotency records past their window.

Each purge deletes in bounded batches, every batch in its own short transaction (the batch is the
unit of work, so this module opens the session scopes), until nothing is left. A large backlog
therefore never holds locks for long, and an interrupted purge keeps what it already deleted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.errorlog.repository import IncomingErrorRepository
from shared.inbound.processed_requests import purge_applied_before
from shared.logging import get_logger

logger = get_logger(__name__)

DEFAULT_PURGE_BATCH_SIZE = 5000
# How long a Firehose request id stays known after it was applied. mParticle retries a request
# within hours; a month leaves a wide margin while keeping the table small.
PROCESSED_REQUEST_RETENTION_DAYS = 30


@dataclass(frozen=True)
class PurgeResult:
    """How many rows a purge deleted, in how many transactions."""

    deleted: int = 0
    batches: int = 0

    def __add__(self, other: PurgeResult) -> PurgeResult:
        return PurgeResult(deleted=self.deleted + other.deleted, batches=self.batches + other.batches)


async def purge_error_log(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    retention_days: int,
    now: datetime,
    batch_size: int = DEFAULT_PURGE_BATCH_SIZE,
) -> PurgeResult:
    """Delete every incoming error logged more than `retention_days` before `now`, tenant by tenant."""
    cutoff = now - timedelta(days=retention_days)
    async with session_scope(sessionmaker) as session:
        tenant_ids = await IncomingErrorRepository(session).tenants_with_entries_logged_before(cutoff)
    result = PurgeResult()
    for tenant_id in tenant_ids:

        async def purge_batch(session: AsyncSession, tenant_id: str = tenant_id) -> int:
            return await IncomingErrorRepository(session).delete_logged_before(tenant_id, cutoff, limit=batch_size)

        result += await _purge_in_batches(sessionmaker, purge_batch, batch_size)
    if result.deleted:
        logger.info("error_log_purged", deleted=result.deleted, before=cutoff.isoformat(), batches=result.batches)
    return result


async def purge_processed_requests(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    retention_days: int = PROCESSED_REQUEST_RETENTION_DAYS,
    batch_size: int = DEFAULT_PURGE_BATCH_SIZE,
) -> PurgeResult:
    """Forget Firehose request ids applied more than `retention_days` before `now`."""
    cutoff = now - timedelta(days=retention_days)

    async def purge_batch(session: AsyncSession) -> int:
        return await purge_applied_before(session, cutoff, limit=batch_size)

    result = await _purge_in_batches(sessionmaker, purge_batch, batch_size)
    if result.deleted:
        logger.info(
            "processed_request_ids_purged", deleted=result.deleted, before=cutoff.isoformat(), batches=result.batches
        )
    return result


async def _purge_in_batches(
    sessionmaker: async_sessionmaker[AsyncSession],
    purge_batch: Callable[[AsyncSession], Awaitable[int]],
    batch_size: int,
) -> PurgeResult:
    """Run `purge_batch` in its own transaction until a batch deletes fewer than `batch_size` rows."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    result = PurgeResult()
    while True:
        async with session_scope(sessionmaker) as session:
            deleted = await purge_batch(session)
        result += PurgeResult(deleted=deleted, batches=1)
        if deleted < batch_size:
            return result
