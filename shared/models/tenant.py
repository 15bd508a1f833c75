"""A tenant (one loyalty environment) and its integration configuration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    Sequence,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base
from shared.mapping.inbound import DEFAULT_MAX_DATA_AGE_HOURS
from shared.models._columns import created_at_column, updated_at_column

# Every configuration change takes the next value; processes poll max(config_revision) to refresh caches.
config_revision_seq = Sequence("config_revision_seq", metadata=Base.metadata)


class Tenant(Base):
    __tablename__ = "tenant"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    engine_key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    # The inbound token is read back (operators paste it into mParticle): stored encrypted with
    # SECRET_KEY, plus a keyed hash that Firehose authentication compares (shared/secret_box.py).
    inbound_token_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    inbound_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    config_revision: Mapped[int] = mapped_column(
        BigInteger,
        config_revision_seq,
        nullable=False,
        server_default=config_revision_seq.next_value(),
        index=True,
    )
    created_at: Mapped[datetime] = created_at_column()
    # Set while an operator has paused outbound delivery: calls are still accepted and wait.
    outbound_paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def _tenant_fk() -> Mapped[str]:
    return mapped_column(String(64), ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True)


class OutboundSettings(Base):
    """Credentials and identity rules for sending to mParticle's S2S API."""

    __tablename__ = "outbound_settings"

    tenant_id: Mapped[str] = _tenant_fk()
    api_url: Mapped[str] = mapped_column(String(500), nullable=False)
    api_key: Mapped[str] = mapped_column(String(500), nullable=False)
    # Encrypted with SECRET_KEY (shared/secret_box.py); only the worker decrypts it, to send.
    api_secret_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    development: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    sync_only_configured_identifiers: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    loyalty_identifier_field: Mapped[str] = mapped_column(String(200), nullable=False)
    customer_identifier_field: Mapped[str] = mapped_column(String(64), nullable=False)
    updated_at: Mapped[datetime] = updated_at_column()


class InboundSettings(Base):
    """How Firehose identities resolve to loyalty customers, and the audience/auto-subscribe switches."""

    __tablename__ = "inbound_settings"

    tenant_id: Mapped[str] = _tenant_fk()
    customer_identifier_field: Mapped[str] = mapped_column(String(64), nullable=False)
    loyalty_identifier_field: Mapped[str] = mapped_column(String(200), nullable=False)
    track_audience_data: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    auto_subscribe: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Events older than this when received are not awarded (EVENT_TOO_OLD); -1 accepts any age.
    max_data_age_hours: Mapped[int] = mapped_column(
        Integer, nullable=False, default=DEFAULT_MAX_DATA_AGE_HOURS, server_default=str(DEFAULT_MAX_DATA_AGE_HOURS)
    )
    updated_at: Mapped[datetime] = updated_at_column()


class _TenantListItem:
    """Rows of an ordered, replace-as-a-whole configuration list."""

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False, index=True
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)


class SyncField(_TenantListItem, Base):
    """Loyalty customer field -> mParticle user attribute (reserved `$` names or custom)."""

    __tablename__ = "sync_field"
    __table_args__ = (UniqueConstraint("tenant_id", "position"),)

    loyalty_field: Mapped[str] = mapped_column(String(200), nullable=False)
    remote_field: Mapped[str] = mapped_column(String(256), nullable=False)


class ExternalEvent(_TenantListItem, Base):
    """Loyalty event -> mParticle custom event, with attribute templates over the event data."""

    __tablename__ = "external_event"
    __table_args__ = (UniqueConstraint("tenant_id", "position"),)

    loyalty_event: Mapped[str] = mapped_column(String(200), nullable=False)
    event_name: Mapped[str] = mapped_column(String(256), nullable=False)
    custom_event_type: Mapped[str] = mapped_column(String(32), nullable=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)


class InboundMapping(_TenantListItem, Base):
    """Firehose event (type and optional name) -> loyalty event, with attribute templates."""

    __tablename__ = "inbound_mapping"
    __table_args__ = (UniqueConstraint("tenant_id", "position"),)

    loyalty_event: Mapped[str] = mapped_column(String(200), nullable=False)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    event_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
