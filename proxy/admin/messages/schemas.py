"""Bodies of the admin API's outbound message routes (CONTRACT §5)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

OutboundStatus = Literal["queued", "retrying", "delivered", "failed", "cancelled"]
OutboundKind = Literal["customer_update", "event", "marketing_communication"]


class OutboundMessageRead(BaseModel):
    """One outbound message; `attempts` counts every delivery attempt, the first included."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: OutboundKind
    customer_id: str
    status: OutboundStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


class AttemptRead(BaseModel):
    """One delivery attempt: when it started, mParticle's status code (null without an answer) and the error."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime
    status_code: int | None
    error: str | None


class OutboundMessageDetail(OutboundMessageRead):
    """A message with the S2S batch it sends and its whole attempt log."""

    batch: dict[str, Any]
    attempt_log: list[AttemptRead]
