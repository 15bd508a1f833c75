"""Data subject requests (GDPR/CCPA) received through the Firehose, and what was done about them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.models._columns import created_at_column


class DataSubjectRequest(Base):
    """One dsr_processing_request. Holds no personal data itself: the customer id, and counts of
    what an erasure removed."""

    __tablename__ = "data_subject_request"
    __table_args__ = (Index("ix_data_subject_request_tenant", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False)
    # The Firehose request id, and mParticle's id of the data subject request.
    request_id: Mapped[str] = mapped_column(String(128), nullable=False)
    subject_request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_type: Mapped[str] = mapped_column(String(32), nullable=False)
    regulation: Mapped[str | None] = mapped_column(String(32), nullable=True)
    requested_by: Mapped[str] = mapped_column(String(32), nullable=False)
    # A shared.vocabulary.DataSubjectOutcome (access/portability: acknowledged, not performed).
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    customer_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # What an erasure removed, as counts by kind.
    removed: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    recorded_at: Mapped[datetime] = created_at_column()
