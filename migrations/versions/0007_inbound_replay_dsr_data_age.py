"""inbound: data age, replay of the incoming error log, daily summaries, data subject requests

- inbound_settings.max_data_age_hours (default 24; -1 accepts any age);
- incoming_error.replayed_at / replay_outcome, and a partial unique index so a daily summary entry
  (ECHO_DROPPED) is one row per tenant and UTC day, upserted;
- data_subject_request: every DSR received and what its erasure removed;
- the ledger's write-once trigger lets an erasure clear an entry's `data` (and nothing else).

Revision ID: 0007_inbound_replay_dsr_age
Revises: 0006_outbound_pause_retry
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_inbound_replay_dsr_age"
down_revision: str | Sequence[str] | None = "0006_outbound_pause_retry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEDGER_WRITE_ONCE_ALLOWING_ERASURE = """
CREATE OR REPLACE FUNCTION ledger_event_write_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A data subject erasure clears the entry's data; every other column stays as written.
    IF NEW.data = '{}'::jsonb
       AND (NEW.id, NEW.tenant_id, NEW.customer_id, NEW.action, NEW.source, NEW.request_id,
            NEW.source_event_id, NEW.dedupe_key, NEW.occurred_at, NEW.recorded_at)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.tenant_id, OLD.customer_id, OLD.action, OLD.source, OLD.request_id,
            OLD.source_event_id, OLD.dedupe_key, OLD.occurred_at, OLD.recorded_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'ledger_event rows are write-once (id %)', OLD.id USING ERRCODE = 'restrict_violation';
END;
$$;
"""

LEDGER_WRITE_ONCE_STRICT = """
CREATE OR REPLACE FUNCTION ledger_event_write_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_event rows are write-once (id %)', OLD.id USING ERRCODE = 'restrict_violation';
END;
$$;
"""


def upgrade() -> None:
    op.add_column(
        "inbound_settings",
        sa.Column("max_data_age_hours", sa.Integer(), server_default="24", nullable=False),
    )
    op.add_column("incoming_error", sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("incoming_error", sa.Column("replay_outcome", sa.Text(), nullable=True))
    op.create_index(
        "uq_incoming_error_daily_summary",
        "incoming_error",
        ["tenant_id", "error_code", "created_at"],
        unique=True,
        postgresql_where=sa.text("error_code IN ('ECHO_DROPPED')"),
    )
    op.create_table(
        "data_subject_request",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("subject_request_id", sa.String(length=128), nullable=True),
        sa.Column("request_type", sa.String(length=32), nullable=False),
        sa.Column("regulation", sa.String(length=32), nullable=True),
        sa.Column("requested_by", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=True),
        sa.Column("removed", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_data_subject_request_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_subject_request")),
    )
    op.create_index("ix_data_subject_request_tenant", "data_subject_request", ["tenant_id", "id"], unique=False)
    op.execute(LEDGER_WRITE_ONCE_ALLOWING_ERASURE)


def downgrade() -> None:
    op.execute(LEDGER_WRITE_ONCE_STRICT)
    op.drop_index("ix_data_subject_request_tenant", table_name="data_subject_request")
    op.drop_table("data_subject_request")
    op.drop_index("uq_incoming_error_daily_summary", table_name="incoming_error")
    op.drop_column("incoming_error", "replay_outcome")
    op.drop_column("incoming_error", "replayed_at")
    op.drop_column("inbound_settings", "max_data_age_hours")
