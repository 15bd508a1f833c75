"""secrets at rest: the inbound token and the S2S secret encrypted with SECRET_KEY

`tenant.inbound_token` becomes `inbound_token_encrypted` (Fernet, keys derived from SECRET_KEY)
plus `inbound_token_hash` (HMAC-SHA256, what Firehose authentication compares);
`outbound_settings.api_secret` becomes `api_secret_encrypted`. Existing rows are encrypted here,
with SECRET_KEY read from the environment: when there are rows and no valid SECRET_KEY the
migration stops with a clear message and changes nothing.

Revision ID: 0008_security_secrets_at_rest
Revises: 0007_inbound_replay_dsr_age
"""

import os
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from shared.secret_box import SecretBox, SecretKeyError, parse_secret_keys

revision: str = "0008_security_secrets_at_rest"
down_revision: str | Sequence[str] | None = "0007_inbound_replay_dsr_age"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _secret_box(rows_to_convert: int) -> SecretBox:
    try:
        secret_key = context.config.attributes.get("secret_key") or os.environ.get("SECRET_KEY")
        return SecretBox(parse_secret_keys(secret_key))
    except SecretKeyError as exc:
        raise RuntimeError(
            f"{rows_to_convert} stored secrets must be converted and SECRET_KEY is not usable: {exc}"
        ) from None


def _count(bind: sa.Connection, sql: str) -> int:
    return int(bind.execute(sa.text(sql)).scalar_one())


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column("tenant", sa.Column("inbound_token_encrypted", sa.Text(), nullable=True))
    op.add_column("tenant", sa.Column("inbound_token_hash", sa.String(length=64), nullable=True))
    op.add_column("outbound_settings", sa.Column("api_secret_encrypted", sa.Text(), nullable=True))
    pending = _count(bind, "SELECT count(*) FROM tenant WHERE inbound_token IS NOT NULL") + _count(
        bind, "SELECT count(*) FROM outbound_settings"
    )
    if pending:
        box = _secret_box(pending)
        for tenant_id, token in bind.execute(
            sa.text("SELECT id, inbound_token FROM tenant WHERE inbound_token IS NOT NULL")
        ).all():
            bind.execute(
                sa.text(
                    "UPDATE tenant SET inbound_token_encrypted = :encrypted, inbound_token_hash = :hash WHERE id = :id"
                ),
                {"encrypted": box.encrypt(token), "hash": box.token_hash(token), "id": tenant_id},
            )
        for tenant_id, secret in bind.execute(sa.text("SELECT tenant_id, api_secret FROM outbound_settings")).all():
            bind.execute(
                sa.text("UPDATE outbound_settings SET api_secret_encrypted = :encrypted WHERE tenant_id = :id"),
                {"encrypted": box.encrypt(secret), "id": tenant_id},
            )
    op.alter_column("outbound_settings", "api_secret_encrypted", nullable=False)
    op.drop_column("outbound_settings", "api_secret")
    op.drop_column("tenant", "inbound_token")


def downgrade() -> None:
    bind = op.get_bind()
    op.add_column("tenant", sa.Column("inbound_token", sa.String(length=128), nullable=True))
    op.add_column("outbound_settings", sa.Column("api_secret", sa.String(length=500), nullable=True))
    pending = _count(bind, "SELECT count(*) FROM tenant WHERE inbound_token_encrypted IS NOT NULL") + _count(
        bind, "SELECT count(*) FROM outbound_settings"
    )
    if pending:
        box = _secret_box(pending)
        for tenant_id, encrypted in bind.execute(
            sa.text("SELECT id, inbound_token_encrypted FROM tenant WHERE inbound_token_encrypted IS NOT NULL")
        ).all():
            bind.execute(
                sa.text("UPDATE tenant SET inbound_token = :token WHERE id = :id"),
                {"token": box.decrypt(encrypted), "id": tenant_id},
            )
        for tenant_id, encrypted in bind.execute(
            sa.text("SELECT tenant_id, api_secret_encrypted FROM outbound_settings")
        ).all():
            bind.execute(
                sa.text("UPDATE outbound_settings SET api_secret = :secret WHERE tenant_id = :id"),
                {"secret": box.decrypt(encrypted), "id": tenant_id},
            )
    op.alter_column("outbound_settings", "api_secret", nullable=False)
    op.drop_column("outbound_settings", "api_secret_encrypted")
    op.drop_column("tenant", "inbound_token_hash")
    op.drop_column("tenant", "inbound_token_encrypted")
