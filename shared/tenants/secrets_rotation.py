"""`loyalty-bridge rotate-secrets`: re-encrypt every stored secret with the newest SECRET_KEY.

Run after putting a new key in front of SECRET_KEY (and restarting the processes); once it has
finished, the old keys may be removed. Each tenant is converted in its own short transaction
under the tenant's row lock (the lock configuration writes take), so it can run while the
service is up, and running it again only counts what is still to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import OutboundSettings, Tenant
from shared.secret_box import SecretBox, SecretUnreadable
from shared.tenants.config import bump_config_revision
from shared.tenants.rows import store_inbound_token


@dataclass
class RotationReport:
    tenants_checked: int = 0
    tokens_rotated: int = 0
    api_secrets_rotated: int = 0


async def rotate_secrets(sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox) -> RotationReport:
    """Re-encrypt inbound tokens and S2S secrets not under the newest key, and recompute token
    hashes with it; SecretUnreadable (nothing of that tenant changed) when a secret's key is gone."""
    report = RotationReport()
    async with sessionmaker() as session:
        tenant_ids = list(await session.scalars(select(Tenant.id).order_by(Tenant.id)))
    for tenant_id in tenant_ids:
        async with sessionmaker() as session:
            try:
                changed = await _rotate_tenant(session, box, tenant_id, report)
            except SecretUnreadable as exc:
                raise SecretUnreadable(f"tenant {tenant_id!r}: {exc.message}") from None
            if changed:
                await bump_config_revision(session, tenant_id)
            await session.commit()
        report.tenants_checked += 1
    return report


async def _rotate_tenant(session: AsyncSession, box: SecretBox, tenant_id: str, report: RotationReport) -> bool:
    tenant = (
        await session.execute(
            select(Tenant.inbound_token_encrypted, Tenant.inbound_token_hash)
            .where(Tenant.id == tenant_id)
            .with_for_update()
        )
    ).one_or_none()
    if tenant is None:  # deleted meanwhile
        return False
    changed = False
    encrypted, token_hash = tenant
    if encrypted:
        token = box.decrypt(encrypted)
        if not box.is_current(encrypted) or token_hash != box.token_hash(token):
            await store_inbound_token(session, box, tenant_id, token)
            report.tokens_rotated += 1
            changed = True
    secret = await session.scalar(
        select(OutboundSettings.api_secret_encrypted).where(OutboundSettings.tenant_id == tenant_id)
    )
    if secret and not box.is_current(secret):
        await session.execute(
            update(OutboundSettings)
            .where(OutboundSettings.tenant_id == tenant_id)
            .values(api_secret_encrypted=box.reencrypt(secret))
        )
        report.api_secrets_rotated += 1
        changed = True
    return changed
