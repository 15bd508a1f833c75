"""Outbound messages (the outbox towards mParticle S2S) and every delivery attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.models._columns import created_at_column, vocabulary_column
from shared.vocabulary import WAITING_STATUSES, AttemptTrigger, OutboundKind, OutboundStatus, sql_in

_WAITING = text(sql_in("status", WAITING_STATUSES))


class OutboundMessage(Base):
    __tablename__ = "outbound_message"
    __table_args__ = (
        # The dispatcher's scan: waiting messages by due time.
        Index(
            "ix_outbound_message_due",
            "next_attempt_at",
            postgresql_where=_WAITING,
        ),
        # Per-customer order: the oldest waiting message of a customer goes first.
        Index("ix_outbound_message_customer", "tenant_id", "customer_id", "sequence"),
        Index("ix_outbound_message_tenant_status", "tenant_id", "status", "created_at"),
        # Claiming: a tenant's waiting messages in acceptance order (migration 0004).
        Index(
            "ix_outbound_message_waiting",
            "tenant_id",
            "sequence",
            postgresql_where=_WAITING,
        ),
        # Held back? An older waiting message of the same customer (migration 0004).
        Index(
            "ix_outbound_message_waiting_customer",
            "tenant_id",
            "customer_id",
            "sequence",
            postgresql_where=_WAITING,
        ),
        # Admin lists: a tenant's messages newest first (migration 0004).
        Index("ix_outbound_message_tenant_sequence", "tenant_id", "sequence"),
        # Leases held right now, by owner (the dead-worker scan each second; migration 0006).
        Index(
            "ix_outbound_message_lease_owner",
            "lease_owner",
            postgresql_where=text("lease_owner IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False)
    # Global acceptance order; messages of one customer are delivered in this order.
    sequence: Mapped[int] = mapped_column(BigInteger, Identity(always=True), nullable=False, unique=True)
    kind: Mapped[str] = vocabulary_column("kind", OutboundKind, 32)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = vocabulary_column("status", OutboundStatus, 16, default=OutboundStatus.QUEUED)
    # The S2S batch, complete with source_request_id and source_message_ids (stable across resends).
    batch: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Set while a worker is sending; a crashed worker's lease expires and the message is taken again.
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The worker holding the lease: a lease whose owner stopped heartbeating is released at once.
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # What the next attempt is: `manual_retry` after an operator's retry, `automatic` otherwise.
    next_attempt_trigger: Mapped[str] = vocabulary_column(
        "next_attempt_trigger",
        AttemptTrigger,
        16,
        default=AttemptTrigger.AUTOMATIC,
        server_default=AttemptTrigger.AUTOMATIC,
    )
    created_at: Mapped[datetime] = created_at_column()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OutboundAttempt(Base):
    __tablename__ = "outbound_attempt"
    __table_args__ = (Index("ix_outbound_attempt_message", "message_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    message_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("outbound_message.id", ondelete="CASCADE"), nullable=False
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    trigger: Mapped[str] = vocabulary_column(
        "trigger", AttemptTrigger, 16, default=AttemptTrigger.AUTOMATIC, server_default=AttemptTrigger.AUTOMATIC
    )
