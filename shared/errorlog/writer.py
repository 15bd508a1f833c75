"""Writing the incoming error log (CONTRACT §4). Reading it lives in shared/repositories."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ErrorCode, ErrorSource
from shared.models import IncomingError
from shared.redaction import redact_payload


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
