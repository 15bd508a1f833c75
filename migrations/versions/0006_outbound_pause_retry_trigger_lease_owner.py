"""outbound: pause per tenant, what triggered each attempt, the owner of a delivery lease

- tenant.outbound_paused_at: set while an operator has paused the tenant's outbound delivery.
- outbound_message.next_attempt_trigger / outbound_attempt.trigger: `automatic` (first send and
  scheduled resends) or `manual_retry` (an operator put a failed message back in the queue).
- outbound_message.lease_owner: the worker holding a delivery lease, so a lease of a worker whose
  heartbeat is gone can be released at once instead of waiting for it to expire (with a partial
  index over the leased messages only).

Constant server defaults only: existing rows get them without a table rewrite (PostgreSQL 11+).

Revision ID: 0006_outbound_pause_retry
Revises: 0005_merge
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_outbound_pause_retry"
down_revision: str | Sequence[str] | None = "0005_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGERS = "('automatic', 'manual_retry')"


def upgrade() -> None:
    op.add_column("tenant", sa.Column("outbound_paused_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbound_message", sa.Column("lease_owner", sa.String(length=64), nullable=True))
    # Only leased messages are in it: the once-a-second scan for dead owners stays tiny.
    op.create_index(
        "ix_outbound_message_lease_owner",
        "outbound_message",
        ["lease_owner"],
        postgresql_where=sa.text("lease_owner IS NOT NULL"),
    )
    op.add_column(
        "outbound_message",
        sa.Column("next_attempt_trigger", sa.String(length=16), nullable=False, server_default="automatic"),
    )
    op.create_check_constraint(
        op.f("ck_outbound_message_next_attempt_trigger"), "outbound_message", f"next_attempt_trigger IN {TRIGGERS}"
    )
    op.add_column(
        "outbound_attempt", sa.Column("trigger", sa.String(length=16), nullable=False, server_default="automatic")
    )
    op.create_check_constraint(op.f("ck_outbound_attempt_trigger"), "outbound_attempt", f"trigger IN {TRIGGERS}")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_outbound_attempt_trigger"), "outbound_attempt", type_="check")
    op.drop_column("outbound_attempt", "trigger")
    op.drop_constraint(op.f("ck_outbound_message_next_attempt_trigger"), "outbound_message", type_="check")
    op.drop_column("outbound_message", "next_attempt_trigger")
    op.drop_index("ix_outbound_message_lease_owner", table_name="outbound_message")
    op.drop_column("outbound_message", "lease_owner")
    op.drop_column("tenant", "outbound_paused_at")
