"""incoming error log: an index per sort key, trigram message search, key-ordered payload

Every list page is a keyset on (sort key, id) within one tenant, so each sortable field gets a
(tenant_id, key, id) btree; request_id sorts as coalesce(request_id, '') (NULL-safe keyset) and
message by its first 200 characters (btree entries are size-limited). pg_trgm serves the
case-insensitive substring filter on message. The logged_at-only index goes: the planner preferred
it (plus a sort) over the tenant's own index, and the retention purge walks (tenant_id, logged_at).
The payload becomes plain JSON so the download keeps the request's key order (JSONB reorders keys).

Revision ID: 0002_error_log
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_error_log"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "incoming_error"


def upgrade() -> None:
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.alter_column(
        TABLE,
        "payload",
        type_=postgresql.JSON(none_as_null=True, astext_type=sa.Text()),
        existing_type=postgresql.JSONB(none_as_null=True, astext_type=sa.Text()),
        existing_nullable=True,
        postgresql_using="payload::json",
    )
    op.drop_index("ix_incoming_error_logged_at", table_name=TABLE)
    op.drop_index("ix_incoming_error_tenant_request", table_name=TABLE)
    op.create_index(
        "ix_incoming_error_tenant_request",
        TABLE,
        ["tenant_id", sa.text("coalesce(request_id, '')"), "id"],
        unique=False,
    )
    op.create_index("ix_incoming_error_tenant_id_key", TABLE, ["tenant_id", "id"], unique=False)
    op.create_index("ix_incoming_error_tenant_code_id", TABLE, ["tenant_id", "error_code", "id"], unique=False)
    op.create_index("ix_incoming_error_tenant_source_id", TABLE, ["tenant_id", "source", "id"], unique=False)
    op.create_index(
        "ix_incoming_error_tenant_message", TABLE, ["tenant_id", sa.text("left(message, 200)"), "id"], unique=False
    )
    op.create_index(
        "ix_incoming_error_message_trgm",
        TABLE,
        ["message"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"message": "gin_trgm_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_incoming_error_message_trgm", table_name=TABLE)
    op.drop_index("ix_incoming_error_tenant_message", table_name=TABLE)
    op.drop_index("ix_incoming_error_tenant_source_id", table_name=TABLE)
    op.drop_index("ix_incoming_error_tenant_code_id", table_name=TABLE)
    op.drop_index("ix_incoming_error_tenant_id_key", table_name=TABLE)
    op.drop_index("ix_incoming_error_tenant_request", table_name=TABLE)
    op.create_index("ix_incoming_error_tenant_request", TABLE, ["tenant_id", "request_id"], unique=False)
    op.create_index("ix_incoming_error_logged_at", TABLE, ["logged_at"], unique=False)
    op.alter_column(
        TABLE,
        "payload",
        type_=postgresql.JSONB(none_as_null=True, astext_type=sa.Text()),
        existing_type=postgresql.JSON(none_as_null=True, astext_type=sa.Text()),
        existing_nullable=True,
        postgresql_using="payload::jsonb",
    )
    # pg_trgm stays: other objects may have come to use it.
