"""Firehose requests accepted while Redis refused them: kept in PostgreSQL until the worker moves
them into the queue (shared.queues.spool)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.models._columns import created_at_column


class SpooledRequest(Base):
    __tablename__ = "firehose_spool"
    __table_args__ = (
        UniqueConstraint("tenant_id", "request_id"),
        # The mover takes the oldest first within each priority (lower first).
        Index("ix_firehose_spool_queue_order", "priority", "received_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False)
    request_id: Mapped[str] = mapped_column(String(128), nullable=False)
    priority: Mapped[int] = mapped_column(Integer, nullable=False)
    # The request body as queued: the tenant's token blanked out.
    body: Mapped[str] = mapped_column(Text, nullable=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    spooled_at: Mapped[datetime] = created_at_column()
