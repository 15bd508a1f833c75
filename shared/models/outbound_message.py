"""Outbound messages (the outbox towards mParticle S2S) and every delivery attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
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
from shared.models._columns import created_at_column

OUTBOUND_KINDS = ("customer_update", "event", "marketing_communication")
OUTBOUND_STATUSES = ("queued", "retrying", "delivered", "failed", "cancelled")
WAITING_STATUSES = ("queued", "retrying")


class OutboundMessage(Base):
    __tablename__ = "outbound_message"
    __table_args__ = (
        CheckConstraint("kind IN ('customer_update', 'event', 'marketing_communication')", name="kind"),
        CheckConstraint("status IN ('queued', 'retrying', 'delivered', 'failed', 'cancelled')", name="status"),
        # The dispatcher's scan: waiting messages by due time.
        Index(
            "ix_outbound_message_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued', 'retrying')"),
        ),
        # Per-customer order: the oldest waiting message of a customer goes first.
        Index("ix_outbound_message_customer", "tenant_id", "customer_id", "sequence"),
        Index("ix_outbound_message_tenant_status", "tenant_id", "status", "created_at"),
        # Claiming: a tenant's waiting messages in acceptance order (migration 0004).
        Index(
            "ix_outbound_message_waiting",
            "tenant_id",
            "sequence",
            postgresql_where=text("status IN ('queued', 'retrying')"),
        ),
        # Held back? An older waiting message of the same customer (migration 0004).
        Index(
            "ix_outbound_message_waiting_customer",
            "tenant_id",
            "customer_id",
            "sequence",
            postgresql_where=text("status IN ('queued', 'retrying')"),
        ),
        # Admin lists: a tenant's messages newest first (migration 0004).
        Index("ix_outbound_message_tenant_sequence", "tenant_id", "sequence"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False)
    # Global acceptance order; messages of one customer are delivered in this order.
    sequence: Mapped[int] = mapped_column(BigInteger, Identity(always=True), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    # The S2S batch, complete with source_request_id and source_message_ids (stable across resends).
    batch: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Set while a worker is sending; a crashed worker's lease expires and the message is taken again.
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
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
