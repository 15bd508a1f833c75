"""outbound messages: indexes for claiming a tenant's waiting messages and for newest-first lists

The delivery worker claims a tenant's waiting messages in acceptance order (`sequence`); a partial
index over the waiting ones keeps that scan small however many messages were delivered before.
Each candidate is checked for an older waiting message of the same customer: a second partial
index answers that with one probe (without it, a planner without statistics on a fresh table
scanned every waiting message per candidate). The admin lists page newest-first by `sequence`.

Revision ID: 0004_outbound
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_outbound"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "outbound_message"


def upgrade() -> None:
    op.create_index(
        "ix_outbound_message_waiting",
        TABLE,
        ["tenant_id", "sequence"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'retrying')"),
    )
    op.create_index(
        "ix_outbound_message_waiting_customer",
        TABLE,
        ["tenant_id", "customer_id", "sequence"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'retrying')"),
    )
    op.create_index("ix_outbound_message_tenant_sequence", TABLE, ["tenant_id", "sequence"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbound_message_tenant_sequence", table_name=TABLE)
    op.drop_index(
        "ix_outbound_message_waiting_customer",
        table_name=TABLE,
        postgresql_where=sa.text("status IN ('queued', 'retrying')"),
    )
    op.drop_index(
        "ix_outbound_message_waiting",
        table_name=TABLE,
        postgresql_where=sa.text("status IN ('queued', 'retrying')"),
    )
