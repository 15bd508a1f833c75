"""firehose_spool: Firehose requests accepted while Redis refused them

The proxy stores a request here (committed before its 200) when the queue cannot take it; the
worker moves spooled requests into the queue, by priority then arrival, once Redis is back.

Revision ID: 0009_reliability_firehose_spool
Revises: 0008_security_secrets_at_rest
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_reliability_firehose_spool"
down_revision: str | Sequence[str] | None = "0008_security_secrets_at_rest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "firehose_spool",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spooled_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_firehose_spool_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firehose_spool")),
        sa.UniqueConstraint("tenant_id", "request_id", name=op.f("uq_firehose_spool_tenant_id_request_id")),
    )
    op.create_index("ix_firehose_spool_queue_order", "firehose_spool", ["priority", "received_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_firehose_spool_queue_order", table_name="firehose_spool")
    op.drop_table("firehose_spool")
