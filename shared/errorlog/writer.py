"""Writing the incoming error log (CONTRACT §4): entries, replay outcomes and daily summaries.
Reading it lives in shared.errorlog.repository."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ErrorCode, ErrorSource
from shared.models import IncomingError
from shared.observability.metrics import count_error_log_entry
from shared.redaction import redact_payload

REPLAY_OUTCOME_LENGTH = 500


async def record_incoming_error(
    session: AsyncSession,
    *,
    tenant_id: str,
    source: ErrorSource,
    error_code: ErrorCode,
    message: str,
    created_at: datetime,
    request_id: str | None = None,
    payload: Any | None = None,
) -> None:
    """Add one entry (the caller commits). The payload is stored with the tenant token redacted."""
    await session.execute(
        insert(IncomingError).values(
            tenant_id=tenant_id,
            source=str(source),
            error_code=str(error_code),
            message=message,
            created_at=created_at,
            request_id=request_id,
            payload=redact_payload(payload) if payload is not None else None,
        )
    )
    count_error_log_entry(session, source, error_code)


async def record_replay_outcome(session: AsyncSession, *, tenant_id: str, entry_id: int, outcome: str) -> None:
    """Mark an entry as replayed now, with what the replay did (the caller commits)."""
    await session.execute(
        update(IncomingError)
        .where(IncomingError.tenant_id == tenant_id, IncomingError.id == entry_id)
        .values(replayed_at=func.now(), replay_outcome=outcome[:REPLAY_OUTCOME_LENGTH])
    )


# "<count> <what>": the count leads, so an upsert can add to it.
_ADD_TO_DAILY_SUMMARY_SQL = text(
    """
    INSERT INTO incoming_error (tenant_id, source, error_code, message, created_at)
    VALUES (:tenant_id, :source, :error_code, CAST(:count AS bigint) || ' ' || CAST(:what AS text), :day_start)
    ON CONFLICT (tenant_id, error_code, created_at) WHERE error_code IN ('ECHO_DROPPED')
    DO UPDATE SET message = (split_part(incoming_error.message, ' ', 1)::bigint + CAST(:count AS bigint))
                            || ' ' || CAST(:what AS text),
                  logged_at = now()
    """
)


async def add_to_daily_summary(
    session: AsyncSession, *, tenant_id: str, source: ErrorSource, error_code: ErrorCode, count: int, what: str
) -> None:
    """Add `count` to the tenant's entry of `error_code` for today (UTC), created at the day's
    start with the message `<total> <what>`: one entry per tenant and day, not one per occurrence.
    The code must be one of shared.models.incoming_error.DAILY_SUMMARY_CODES."""
    day_start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    await session.execute(
        _ADD_TO_DAILY_SUMMARY_SQL,
        {
            "tenant_id": tenant_id,
            "source": str(source),
            "error_code": str(error_code),
            "count": count,
            "what": what,
            "day_start": day_start,
        },
    )
