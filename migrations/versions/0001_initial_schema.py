"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 16:08:58.066555
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


LEDGER_WRITE_ONCE_FUNCTION = """
CREATE FUNCTION ledger_event_write_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_event rows are write-once (id %)', OLD.id USING ERRCODE = 'restrict_violation';
END;
$$
"""
LEDGER_WRITE_ONCE_TRIGGER = """
CREATE TRIGGER ledger_event_write_once BEFORE UPDATE ON ledger_event
    FOR EACH ROW EXECUTE FUNCTION ledger_event_write_once();
"""


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("config_revision_seq")))
    op.create_table(
        "tenant",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("engine_key_hash", sa.String(length=64), nullable=False),
        sa.Column("inbound_token", sa.String(length=128), nullable=True),
        sa.Column(
            "config_revision", sa.BigInteger(), server_default=sa.text("nextval('config_revision_seq')"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant")),
    )
    op.create_table(
        "customer",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attributes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('active', 'inactive')", name=op.f("ck_customer_status")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_customer_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_customer")),
    )
    op.create_index(
        "ix_customer_attributes",
        "customer",
        ["attributes"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"attributes": "jsonb_path_ops"},
    )
    op.create_table(
        "customer_list",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("audience_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('active', 'inactive')", name=op.f("ck_customer_list_status")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_customer_list_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_list")),
        sa.UniqueConstraint("tenant_id", "audience_id", name=op.f("uq_customer_list_tenant_id_audience_id")),
    )
    op.create_index(op.f("ix_customer_list_tenant_id"), "customer_list", ["tenant_id"], unique=False)
    op.create_table(
        "external_event",
        sa.Column("loyalty_event", sa.String(length=200), nullable=False),
        sa.Column("event_name", sa.String(length=256), nullable=False),
        sa.Column("custom_event_type", sa.String(length=32), nullable=False),
        sa.Column("attributes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_external_event_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_event")),
        sa.UniqueConstraint("tenant_id", "position", name=op.f("uq_external_event_tenant_id_position")),
    )
    op.create_index(op.f("ix_external_event_tenant_id"), "external_event", ["tenant_id"], unique=False)
    op.create_table(
        "inbound_mapping",
        sa.Column("loyalty_event", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("event_name", sa.String(length=256), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("attributes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_inbound_mapping_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_mapping")),
        sa.UniqueConstraint("tenant_id", "position", name=op.f("uq_inbound_mapping_tenant_id_position")),
    )
    op.create_index(op.f("ix_inbound_mapping_tenant_id"), "inbound_mapping", ["tenant_id"], unique=False)
    op.create_table(
        "inbound_settings",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_identifier_field", sa.String(length=64), nullable=False),
        sa.Column("loyalty_identifier_field", sa.String(length=200), nullable=False),
        sa.Column("track_audience_data", sa.Boolean(), nullable=False),
        sa.Column("auto_subscribe", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_inbound_settings_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_inbound_settings")),
    )
    op.create_table(
        "incoming_error",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("logged_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("payload", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_incoming_error_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incoming_error")),
    )
    op.create_index("ix_incoming_error_logged_at", "incoming_error", ["logged_at"], unique=False)
    op.create_index(
        "ix_incoming_error_tenant_code", "incoming_error", ["tenant_id", "error_code", "logged_at", "id"], unique=False
    )
    op.create_index(
        "ix_incoming_error_tenant_created", "incoming_error", ["tenant_id", "created_at", "id"], unique=False
    )
    op.create_index("ix_incoming_error_tenant_logged", "incoming_error", ["tenant_id", "logged_at", "id"], unique=False)
    op.create_index("ix_incoming_error_tenant_request", "incoming_error", ["tenant_id", "request_id"], unique=False)
    op.create_index(
        "ix_incoming_error_tenant_source", "incoming_error", ["tenant_id", "source", "logged_at", "id"], unique=False
    )
    op.create_table(
        "outbound_message",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("batch", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('customer_update', 'event', 'marketing_communication')", name=op.f("ck_outbound_message_kind")
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'retrying', 'delivered', 'failed', 'cancelled')",
            name=op.f("ck_outbound_message_status"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_outbound_message_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_message")),
        sa.UniqueConstraint("sequence", name=op.f("uq_outbound_message_sequence")),
    )
    op.create_index(
        "ix_outbound_message_customer", "outbound_message", ["tenant_id", "customer_id", "sequence"], unique=False
    )
    op.create_index(
        "ix_outbound_message_due",
        "outbound_message",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'retrying')"),
    )
    op.create_index(
        "ix_outbound_message_tenant_status", "outbound_message", ["tenant_id", "status", "created_at"], unique=False
    )
    op.create_table(
        "outbound_settings",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("api_url", sa.String(length=500), nullable=False),
        sa.Column("api_key", sa.String(length=500), nullable=False),
        sa.Column("api_secret", sa.String(length=500), nullable=False),
        sa.Column("development", sa.Boolean(), nullable=False),
        sa.Column("sync_only_configured_identifiers", sa.Boolean(), nullable=False),
        sa.Column("loyalty_identifier_field", sa.String(length=200), nullable=False),
        sa.Column("customer_identifier_field", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_outbound_settings_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_outbound_settings")),
    )
    op.create_table(
        "processed_request",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_processed_request_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "request_id", name=op.f("pk_processed_request")),
    )
    op.create_index("ix_processed_request_processed_at", "processed_request", ["processed_at"], unique=False)
    op.create_table(
        "sync_field",
        sa.Column("loyalty_field", sa.String(length=200), nullable=False),
        sa.Column("remote_field", sa.String(length=256), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_sync_field_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_field")),
        sa.UniqueConstraint("tenant_id", "position", name=op.f("uq_sync_field_tenant_id_position")),
    )
    op.create_index(op.f("ix_sync_field_tenant_id"), "sync_field", ["tenant_id"], unique=False)
    op.create_table(
        "ledger_event",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=200), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("source_event_id", sa.String(length=128), nullable=True),
        sa.Column("dedupe_key", sa.String(length=512), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "customer_id"],
            ["customer.tenant_id", "customer.id"],
            name=op.f("fk_ledger_event_tenant_id_customer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_event")),
        sa.UniqueConstraint("tenant_id", "dedupe_key", name=op.f("uq_ledger_event_tenant_id_dedupe_key")),
    )
    op.create_index("ix_ledger_event_customer", "ledger_event", ["tenant_id", "customer_id", "id"], unique=False)
    op.create_table(
        "list_member",
        sa.Column("list_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"], ["customer_list.id"], name=op.f("fk_list_member_list_id_customer_list"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "customer_id"],
            ["customer.tenant_id", "customer.id"],
            name=op.f("fk_list_member_tenant_id_customer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("list_id", "customer_id", name=op.f("pk_list_member")),
    )
    op.create_index("ix_list_member_customer", "list_member", ["tenant_id", "customer_id"], unique=False)
    op.create_table(
        "outbound_attempt",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["outbound_message.id"],
            name=op.f("fk_outbound_attempt_message_id_outbound_message"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_attempt")),
    )
    op.create_index("ix_outbound_attempt_message", "outbound_attempt", ["message_id", "id"], unique=False)
    op.create_index(op.f("ix_tenant_config_revision"), "tenant", ["config_revision"], unique=False)
    op.execute(LEDGER_WRITE_ONCE_FUNCTION)
    op.execute(LEDGER_WRITE_ONCE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS ledger_event_write_once ON ledger_event")
    op.execute("DROP FUNCTION IF EXISTS ledger_event_write_once()")
    op.drop_index(op.f("ix_tenant_config_revision"), table_name="tenant")
    op.drop_index("ix_outbound_attempt_message", table_name="outbound_attempt")
    op.drop_table("outbound_attempt")
    op.drop_index("ix_list_member_customer", table_name="list_member")
    op.drop_table("list_member")
    op.drop_index("ix_ledger_event_customer", table_name="ledger_event")
    op.drop_table("ledger_event")
    op.drop_index(op.f("ix_sync_field_tenant_id"), table_name="sync_field")
    op.drop_table("sync_field")
    op.drop_index("ix_processed_request_processed_at", table_name="processed_request")
    op.drop_table("processed_request")
    op.drop_table("outbound_settings")
    op.drop_index("ix_outbound_message_tenant_status", table_name="outbound_message")
    op.drop_index(
        "ix_outbound_message_due",
        table_name="outbound_message",
        postgresql_where=sa.text("status IN ('queued', 'retrying')"),
    )
    op.drop_index("ix_outbound_message_customer", table_name="outbound_message")
    op.drop_table("outbound_message")
    op.drop_index("ix_incoming_error_tenant_source", table_name="incoming_error")
    op.drop_index("ix_incoming_error_tenant_request", table_name="incoming_error")
    op.drop_index("ix_incoming_error_tenant_logged", table_name="incoming_error")
    op.drop_index("ix_incoming_error_tenant_created", table_name="incoming_error")
    op.drop_index("ix_incoming_error_tenant_code", table_name="incoming_error")
    op.drop_index("ix_incoming_error_logged_at", table_name="incoming_error")
    op.drop_table("incoming_error")
    op.drop_table("inbound_settings")
    op.drop_index(op.f("ix_inbound_mapping_tenant_id"), table_name="inbound_mapping")
    op.drop_table("inbound_mapping")
    op.drop_index(op.f("ix_external_event_tenant_id"), table_name="external_event")
    op.drop_table("external_event")
    op.drop_index(op.f("ix_customer_list_tenant_id"), table_name="customer_list")
    op.drop_table("customer_list")
    op.drop_index(
        "ix_customer_attributes",
        table_name="customer",
        postgresql_using="gin",
        postgresql_ops={"attributes": "jsonb_path_ops"},
    )
    op.drop_table("customer")
    op.drop_table("tenant")
    op.execute(sa.schema.DropSequence(sa.Sequence("config_revision_seq")))
