"""Loyalty customers and their write-once event ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.models._columns import created_at_column, updated_at_column, vocabulary_column
from shared.vocabulary import CustomerStatus


class Customer(Base):
    __tablename__ = "customer"
    __table_args__ = (
        # Serves `attributes @> '{"field": "value"}'`, the lookup by the configured identifier field.
        Index(
            "ix_customer_attributes",
            "attributes",
            postgresql_using="gin",
            postgresql_ops={"attributes": "jsonb_path_ops"},
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = vocabulary_column("status", CustomerStatus, 16)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class LedgerEvent(Base):
    """One loyalty event. Rows are never updated (a trigger refuses it); re-delivery is absorbed by
    the unique `(tenant_id, dedupe_key)`."""

    __tablename__ = "ledger_event"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customer.tenant_id", "customer.id"], ondelete="CASCADE"),
        UniqueConstraint("tenant_id", "dedupe_key"),
        Index("ix_ledger_event_customer", "tenant_id", "customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), nullable=False)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    action: Mapped[str] = mapped_column(String(200), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    source: Mapped[str] = mapped_column(String(32), nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    source_event_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # e.g. "<request id>/<event id>/<mapping index>": what makes one ledger entry once-only.
    dedupe_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
