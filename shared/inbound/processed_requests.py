"""processed_request: the Firehose request ids the worker has applied (the durable once-only guard
of inbound work). Every statement on the table lives here. Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    CursorResult,
    Delete,
    Text,
    any_,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import ProcessedRequest

# (tenant_id, request id, or replay key: shared.inbound.processed_requests.replay_key)
ClaimKey = tuple[str, str]

_CLAIM_SQL = text(
    """
    INSERT INTO processed_request (tenant_id, request_id)
    SELECT * FROM unnest(:tenant_ids, :request_ids)
    ON CONFLICT DO NOTHING
    RETURNING tenant_id, request_id
    """
).bindparams(bindparam("tenant_ids", type_=ARRAY(Text)), bindparam("request_ids", type_=ARRAY(Text)))


def replay_key(entry_id: int, requested_at_ms: int) -> str:
    """What a replay of an incoming error entry claims instead of the request id (already claimed
    by the original run): one key per replay asked for, so a re-delivered replay is applied once
    and a later replay of the same entry runs again."""
    return f"replay:{entry_id}:{requested_at_ms}"


async def claim_requests(session: AsyncSession, keys: Sequence[ClaimKey]) -> set[ClaimKey]:
    """Claim request ids in one statement (in the caller's transaction); returns those not claimed
    before, which the caller applies now."""
    if not keys:
        return set()
    rows = await session.execute(
        _CLAIM_SQL, {"tenant_ids": [key[0] for key in keys], "request_ids": [key[1] for key in keys]}
    )
    return {(row[0], row[1]) for row in rows}


def purge_statement(cutoff: datetime, limit: int) -> Delete:
    """DELETE up to `limit` of the oldest processed_request rows applied before `cutoff`.

    The rows are locked (skipping those a concurrent purge holds) and deleted by their physical
    address: a row-value `IN (subquery)` made the planner scan the whole table to hash-join.
    """
    ctid: ColumnElement[Any] = literal_column("ctid")
    oldest = (
        select(ctid)
        .select_from(ProcessedRequest)
        .where(ProcessedRequest.processed_at < cutoff)
        .order_by(ProcessedRequest.processed_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (
        delete(ProcessedRequest)
        .where(ctid == any_(func.array(oldest.scalar_subquery())))
        .execution_options(synchronize_session=False)
    )


async def purge_applied_before(session: AsyncSession, cutoff: datetime, *, limit: int) -> int:
    """Forget up to `limit` request ids applied before `cutoff`; returns how many."""
    result = cast(CursorResult[Any], await session.execute(purge_statement(cutoff, limit)))
    return result.rowcount
