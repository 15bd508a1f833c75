"""The incoming error log (CONTRACT §4)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base


class IncomingError(Base):
    __tablename__ = "incoming_error"
    __table_args__ = (
        Index("ix_incoming_error_tenant_logged", "tenant_id", "logged_at", "id"),
        Index("ix_incoming_error_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_incoming_error_tenant_request", "tenant_id", "request_id"),
        Index("ix_incoming_error_tenant_code", "tenant_id", "error_code", "logged_at", "id"),
        Index("ix_incoming_error_tenant_source", "tenant_id", "source", "logged_at", "id"),
        Index("ix_incoming_error_logged_at", "logged_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error_code: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    logged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    # The request as received, with account_settings.authenticationToken redacted.
    payload: Mapped[Any | None] = mapped_column(JSONB(none_as_null=True), nullable=True)
