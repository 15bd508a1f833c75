"""Replay from the incoming error log (CONTRACT §8): a stored request goes through the Firehose
queue again and the worker applies it with the tenant's CURRENT configuration.

- Only entries past the proxy's checks with a stored payload can be replayed: a proxy_request
  entry was never a valid request (409 NOT_REPLAYABLE), an entry without payload has nothing to
  replay (409 NO_PAYLOAD).
- The replayed request carries the entry id (shared.queues.firehose.ReplayOf). The worker claims a
  replay key instead of the request id (which the original run claimed) and relies on the ledger's
  dedupe keys: a replayed event is never recorded twice, and replaying again is harmless. It then
  sets the entry's `replayed_at` and `replay_outcome`; a replay logs no new error entries.
- Replays are queued at the lowest priority, behind live traffic, and keep the original receipt
  time (max_data_age_hours counts from when mParticle sent it). The stored payload has its token
  redacted: the worker never needs it (the proxy authenticated the original request).
"""

from __future__ import annotations

import time

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from proxy.admin.errorlog.schemas import ReplayCount, ReplayQuery
from proxy.admin.errorlog.service import filters_from_query, find_entry
from shared.errorlog.repository import NOT_REPLAYABLE_SOURCES, IncomingErrorRepository, ReplayableEntry
from shared.errors import Conflict, ErrorCode, QueueUnavailable
from shared.queues.firehose import FirehoseQueue, QueuedRequest, ReplayOf
from shared.queues.jobs import UNMAPPED_PRIORITY
from shared.tenants.rows import require_tenant
from shared.transient import is_transient_queue_error

# Entries read and queued per round trip when replaying by filter.
REPLAY_CHUNK = 200


def _queued(tenant_id: str, entry: ReplayableEntry, requested_at_ms: int) -> QueuedRequest:
    payload = entry.payload
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str) or not payload.get("id"):
        raise Conflict(f"incoming error {entry.id} does not hold a Firehose request", code=ErrorCode.NOT_REPLAYABLE)
    return QueuedRequest(
        tenant_id=tenant_id,
        # The queue member: a replay of an entry already waiting is not queued twice.
        request_id=f"replay:{entry.id}",
        body=orjson.dumps(payload).decode(),
        received_at_ms=int(entry.created_at.timestamp() * 1000),
        priority=UNMAPPED_PRIORITY,
        replay_of=ReplayOf(entry.id, requested_at_ms),
    )


async def replay_entry(session: AsyncSession, queue: FirehoseQueue, tenant_id: str, entry_id: str) -> ReplayCount:
    """Queue one entry's request for replay."""
    entry = await find_entry(session, tenant_id, entry_id)
    if entry.source in NOT_REPLAYABLE_SOURCES:
        raise Conflict(
            f"incoming error {entry.id} was rejected by the proxy ({entry.source}): it was never a valid request",
            code=ErrorCode.NOT_REPLAYABLE,
        )
    if entry.payload is None:
        raise Conflict(f"incoming error {entry.id} has no stored payload to replay", code=ErrorCode.NO_PAYLOAD)
    replayable = ReplayableEntry(entry.id, entry.created_at, entry.payload)
    await _enqueue(queue, [_queued(tenant_id, replayable, _now_ms())])
    return ReplayCount(count=1)


async def replay_matching(
    session: AsyncSession, queue: FirehoseQueue, tenant_id: str, query: ReplayQuery
) -> ReplayCount:
    """Queue every replayable entry matching the list's filters (only count them on a dry run)."""
    repository = IncomingErrorRepository(session)
    await require_tenant(session, tenant_id)
    filters = filters_from_query(query)
    if query.dry_run:
        return ReplayCount(count=await repository.count_replayable(tenant_id, filters))
    requested_at_ms = _now_ms()
    count = 0
    after_id: int | None = None
    while entries := await repository.replayable_page(tenant_id, filters, after_id=after_id, limit=REPLAY_CHUNK):
        after_id = entries[-1].id
        await _enqueue(queue, [_queued(tenant_id, entry, requested_at_ms) for entry in entries])
        count += len(entries)
    return ReplayCount(count=count)


async def _enqueue(queue: FirehoseQueue, requests: list[QueuedRequest]) -> None:
    """Queue replays; 503 QUEUE_UNAVAILABLE while Redis cannot take them (nothing was replayed
    that the operator is told about: repeating the call is harmless)."""
    try:
        await queue.enqueue_many(requests)
    except Exception as exc:
        if is_transient_queue_error(exc):
            raise QueueUnavailable("the processing queue is unavailable; retry the replay later") from exc
        raise


def _now_ms() -> int:
    return int(time.time() * 1000)
