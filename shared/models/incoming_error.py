"""The incoming error log (CONTRACT §4).

Every list sort is a keyset on (sort key, id), so each sortable field has a (tenant_id, key, id)
index; filters with the default sort (-logged_at) use (tenant_id, filter, logged_at, id) indexes,
and the message substring filter a pg_trgm GIN index. Migration 0002 creates them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, DateTime, ForeignKey, Index, String, Text, func, literal_column, text
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base

# Sorting by message uses this many leading characters: btree entries are size-limited, and the
# index must accept a message of any length.
MESSAGE_SORT_PREFIX_CHARS = 200


class IncomingError(Base):
    __tablename__ = "incoming_error"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error_code: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    logged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    # The request as received (plain JSON keeps its key order for the download), with
    # account_settings.authenticationToken redacted.
    payload: Mapped[Any | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # Set by the worker when an operator's replay of the entry was applied (CONTRACT §8).
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    replay_outcome: Mapped[str | None] = mapped_column(Text, nullable=True)


def request_id_sort_key() -> ColumnElement[str]:
    """The request_id sort expression: a missing request id sorts as the empty string."""
    # Literals, not bound parameters: the planner matches the query's expression to the index's.
    return func.coalesce(IncomingError.request_id, literal_column("''"), type_=String)


def message_sort_key() -> ColumnElement[str]:
    """The message sort expression: its first MESSAGE_SORT_PREFIX_CHARS characters."""
    return func.left(IncomingError.message, literal_column(str(MESSAGE_SORT_PREFIX_CHARS)), type_=Text)


# Sort keys, each as (tenant_id, key, id). The retention purge also walks the logged_at one, tenant
# by tenant: a logged_at-only index would tempt the planner into scanning every tenant's rows.
Index("ix_incoming_error_tenant_logged", IncomingError.tenant_id, IncomingError.logged_at, IncomingError.id)
Index("ix_incoming_error_tenant_created", IncomingError.tenant_id, IncomingError.created_at, IncomingError.id)
Index("ix_incoming_error_tenant_id_key", IncomingError.tenant_id, IncomingError.id)
Index("ix_incoming_error_tenant_request", IncomingError.tenant_id, request_id_sort_key(), IncomingError.id)
Index("ix_incoming_error_tenant_code_id", IncomingError.tenant_id, IncomingError.error_code, IncomingError.id)
Index("ix_incoming_error_tenant_source_id", IncomingError.tenant_id, IncomingError.source, IncomingError.id)
Index("ix_incoming_error_tenant_message", IncomingError.tenant_id, message_sort_key(), IncomingError.id)
# Equality filters under the default sort (-logged_at).
Index(
    "ix_incoming_error_tenant_code",
    IncomingError.tenant_id,
    IncomingError.error_code,
    IncomingError.logged_at,
    IncomingError.id,
)
Index(
    "ix_incoming_error_tenant_source",
    IncomingError.tenant_id,
    IncomingError.source,
    IncomingError.logged_at,
    IncomingError.id,
)
# Daily summaries (one row per tenant, code and UTC day, created_at = the day's start) are upserted.
DAILY_SUMMARY_CODES = ("ECHO_DROPPED",)
Index(
    "uq_incoming_error_daily_summary",
    IncomingError.tenant_id,
    IncomingError.error_code,
    IncomingError.created_at,
    unique=True,
    postgresql_where=text("error_code IN ('ECHO_DROPPED')"),
)
# Case-insensitive substring search on message (ILIKE '%…%').
Index(
    "ix_incoming_error_message_trgm",
    IncomingError.message,
    postgresql_using="gin",
    postgresql_ops={"message": "gin_trgm_ops"},
)
