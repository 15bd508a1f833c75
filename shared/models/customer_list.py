"""Customer lists (mParticle audiences) and their members."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.models._columns import created_at_column, updated_at_column, vocabulary_column
from shared.vocabulary import ListStatus


class CustomerList(Base):
    __tablename__ = "customer_list"
    __table_args__ = (UniqueConstraint("tenant_id", "audience_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(500), nullable=False)
    status: Mapped[str] = vocabulary_column("status", ListStatus, 16, default=ListStatus.ACTIVE)
    audience_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class ListMember(Base):
    __tablename__ = "list_member"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "customer_id"], ["customer.tenant_id", "customer.id"], ondelete="CASCADE"),
        Index("ix_list_member_customer", "tenant_id", "customer_id"),
    )

    list_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("customer_list.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), nullable=False)
    added_at: Mapped[datetime] = created_at_column()
