"""Bodies and query parameters of the admin API's outbound message routes (CONTRACT §5, §8)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from proxy.admin.errorlog.schemas import Timestamp
from shared.vocabulary import AttemptTrigger, OutboundKind, OutboundStatus

__all__ = [
    "AttemptRead",
    "AttemptTrigger",
    "OutboundKind",
    "OutboundMessageDetail",
    "OutboundMessageQuery",
    "OutboundMessageRead",
    "OutboundPauseRead",
    "OutboundStatus",
    "RetryCount",
]


class OutboundMessageQuery(BaseModel):
    """The list's filters; every given filter must match. The retry by filter takes the same ones."""

    status: OutboundStatus | None = Field(default=None, description="only messages in this status")
    kind: OutboundKind | None = Field(default=None, description="only messages of this kind")
    customer_id: str | None = Field(default=None, max_length=128, description="only this customer's messages")
    created_from: Timestamp | None = Field(default=None, description="created_at >= this (ISO 8601; no offset = UTC)")
    created_to: Timestamp | None = Field(default=None, description="created_at <= this (ISO 8601; no offset = UTC)")
    last_status_code: int | None = Field(
        default=None, ge=100, le=599, description="only messages whose last attempt got this HTTP status"
    )

    @model_validator(mode="after")
    def _range_in_order(self) -> Self:
        if self.created_from is not None and self.created_to is not None and self.created_from > self.created_to:
            raise ValueError("created_from must not be after created_to")
        return self


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
    """One delivery attempt: its identity, when it started, what triggered it, mParticle's status
    code (null without an answer) and the error."""

    model_config = ConfigDict(from_attributes=True)

    attempt_id: int = Field(validation_alias="id", description="unique per attempt, in the order they were logged")
    at: datetime
    trigger: AttemptTrigger = Field(
        description="`automatic` (first send or scheduled resend) or `manual_retry` (an operator's retry)"
    )
    status_code: int | None
    error: str | None


class OutboundMessageDetail(OutboundMessageRead):
    """A message with the S2S batch it sends and its whole attempt log."""

    batch: dict[str, Any]
    attempt_log: list[AttemptRead]


class RetryCount(BaseModel):
    """How many failed messages matched (dry run) or were put back in the queue."""

    count: int


class OutboundPauseRead(BaseModel):
    """Whether the tenant's outbound delivery is paused, and since when."""

    tenant_id: str
    paused: bool
    outbound_paused_at: datetime | None
