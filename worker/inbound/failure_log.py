"""Logging a request that failed while being applied (PROCESSING_FAILED), in its own transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.errorlog.writer import record_incoming_error, record_replay_outcome
from shared.errors import DatabaseUnavailable, ErrorCode, ErrorSource
from shared.mapping.sanitize import scrub_nul
from shared.queues.firehose import QueuedRequest
from shared.transient import is_transient_database_error

FAILURE_MESSAGE_LENGTH = 300


async def record_processing_failure(
    sessionmaker: async_sessionmaker[AsyncSession], queued: QueuedRequest, error: BaseException
) -> None:
    """Log an engine_processing PROCESSING_FAILED entry with the payload (for a replay: record it
    as the outcome of the entry being replayed). DatabaseUnavailable when PostgreSQL is out."""
    first_line = (str(error).splitlines() or [""])[0]
    message = f"{error.__class__.__name__}: {first_line}"[:FAILURE_MESSAGE_LENGTH]
    try:
        payload, _ = scrub_nul(orjson.loads(queued.body))
    except orjson.JSONDecodeError:
        payload = None
    request_id = payload.get("id") if isinstance(payload, dict) else None
    try:
        async with session_scope(sessionmaker) as session:
            if queued.replay_of is not None:
                await record_replay_outcome(
                    session,
                    tenant_id=queued.tenant_id,
                    entry_id=queued.replay_of.entry_id,
                    outcome=f"failed: {ErrorCode.PROCESSING_FAILED} ({message})",
                )
                return
            await record_incoming_error(
                session,
                tenant_id=queued.tenant_id,
                source=ErrorSource.ENGINE_PROCESSING,
                error_code=ErrorCode.PROCESSING_FAILED,
                message=message,
                created_at=datetime.fromtimestamp(queued.received_at_ms / 1000, tz=UTC),
                request_id=request_id[:128] if isinstance(request_id, str) else None,
                payload=payload,
            )
    except Exception as exc:
        if is_transient_database_error(exc):
            raise DatabaseUnavailable(exc.__class__.__name__) from exc
        raise
