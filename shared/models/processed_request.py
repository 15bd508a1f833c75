"""Firehose requests the worker has applied: the durable once-only guard for inbound work."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.models._columns import created_at_column


class ProcessedRequest(Base):
    __tablename__ = "processed_request"
    __table_args__ = (Index("ix_processed_request_processed_at", "processed_at"),)

    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    processed_at: Mapped[datetime] = created_at_column()
