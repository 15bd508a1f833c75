"""join the error-log and outbound branches; engine key hashes unique

Both branches were written in parallel on top of 0001; this revision joins them, so `alembic
upgrade head` (singular) works again and later migrations have one parent. It also adds the unique
constraint on tenant.engine_key_hash that the model declares and 0001 missed: the outbound API
looks tenants up by that hash.

Revision ID: 0005_merge
Revises: 0002_error_log, 0004_outbound
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_merge"
down_revision: str | Sequence[str] | None = ("0002_error_log", "0004_outbound")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_unique_constraint(op.f("uq_tenant_engine_key_hash"), "tenant", ["engine_key_hash"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_tenant_engine_key_hash"), "tenant", type_="unique")
