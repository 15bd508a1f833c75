"""The Firehose spool: requests accepted while Redis refused them, kept in PostgreSQL (firehose_spool).

The proxy spools a request only when the queue refuses it (connection refused or lost, timeout):
the success path never touches PostgreSQL. The row is committed before the 200. The worker's
spool mover (worker/spool_mover.py) moves spooled requests into the queue by priority, then
arrival, and deletes each row only once Redis has acknowledged it. A request both spooled and
queued, or moved twice, is harmless: the queue's "already queued" check and processed_request
make sure it is applied once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import SpooledRequest
from shared.queues.firehose import QueuedRequest


@dataclass(frozen=True)
class SpooledBatch:
    """Spooled requests taken in queue order (row ids, to delete once queued)."""

    ids: list[int]
    requests: list[QueuedRequest]


class FirehoseSpool:
    """The spool's rows, in the caller's session (the caller commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, request: QueuedRequest) -> bool:
        """Spool a request (its body already has the token blanked); False when this request id
        of the tenant is spooled already."""
        if request.priority is None:
            raise ValueError(f"request {request.request_id} has no priority to be spooled with")
        inserted = await self.session.scalar(
            insert(SpooledRequest)
            .values(
                tenant_id=request.tenant_id,
                request_id=request.request_id,
                priority=request.priority,
                body=request.body,
                received_at=datetime.fromtimestamp(request.received_at_ms / 1000, tz=UTC),
            )
            .on_conflict_do_nothing(index_elements=[SpooledRequest.tenant_id, SpooledRequest.request_id])
            .returning(SpooledRequest.id)
        )
        return inserted is not None

    async def take_oldest(self, limit: int, max_bytes: int) -> SpooledBatch:
        """Lock up to `limit` spooled requests in queue order (priority, then arrival), stopping at
        `max_bytes` of bodies (at least one), skipping rows another worker is moving; each keeps
        its arrival as its place in the queue."""
        queue_order = (SpooledRequest.priority, SpooledRequest.received_at, SpooledRequest.id)
        sizes = (
            await self.session.execute(
                select(SpooledRequest.id, func.octet_length(SpooledRequest.body)).order_by(*queue_order).limit(limit)
            )
        ).all()
        chosen: list[int] = []
        total_bytes = 0
        for row_id, size in sizes:
            if chosen and total_bytes + size > max_bytes:
                break
            chosen.append(row_id)
            total_bytes += size
        if not chosen:
            return SpooledBatch([], [])
        rows = (
            await self.session.scalars(
                select(SpooledRequest)
                .where(SpooledRequest.id.in_(chosen))
                .order_by(*queue_order)
                .with_for_update(skip_locked=True)
            )
        ).all()
        requests = []
        for index, row in enumerate(rows):
            received_at_ms = int(row.received_at.timestamp() * 1000)
            requests.append(
                QueuedRequest(
                    tenant_id=row.tenant_id,
                    request_id=row.request_id,
                    body=row.body,
                    received_at_ms=received_at_ms,
                    priority=row.priority,
                    # Arrival order, and the order of this batch within one millisecond.
                    queued_at_ns=received_at_ms * 1_000_000 + index,
                )
            )
        return SpooledBatch([row.id for row in rows], requests)

    async def remove(self, ids: Sequence[int]) -> None:
        """Delete spooled rows (once their requests are in the queue)."""
        if ids:
            await self.session.execute(delete(SpooledRequest).where(SpooledRequest.id.in_(list(ids))))


async def spool_size(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """How many requests wait in the spool (the loyalty_bridge_spool_size gauge)."""
    async with sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(SpooledRequest))
    return int(count or 0)
