"""What every tenant repository statement builds on: the tenant row's existence and lock, whether
the tenant is connected, and its inbound token, kept encrypted (shared/secret_box.py)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import Conflict, ErrorCode, NotFound
from shared.models import OutboundSettings, Tenant
from shared.secret_box import SecretBox
from shared.settings import Settings


def tenant_not_found(tenant_id: str) -> NotFound:
    return NotFound(f"tenant {tenant_id!r} not found")


async def require_tenant(session: AsyncSession, tenant_id: str) -> None:
    """NotFound unless the tenant exists (an unknown tenant's resources are a 404, not an empty list)."""
    if await session.scalar(select(Tenant.id).where(Tenant.id == tenant_id)) is None:
        raise tenant_not_found(tenant_id)


def tenant_not_connected(tenant_id: str) -> Conflict:
    return Conflict(
        f"tenant {tenant_id!r} is not connected: save its outbound settings first", code=ErrorCode.NOT_CONNECTED
    )


class TenantRows:
    """Checks, locks and inbound-token storage of one session, always scoped to one tenant id."""

    def __init__(self, session: AsyncSession, settings: Settings | None = None) -> None:
        # Settings (SECRET_KEY, OUTBOUND_ALLOWED_HOSTS) are needed only by the methods that
        # store or show secrets and by save_outbound_settings; the others work without.
        self._session = session
        self._settings = settings

    async def _require_tenant(self, tenant_id: str) -> None:
        await require_tenant(self._session, tenant_id)

    async def _lock_tenant(self, tenant_id: str) -> str | None:
        """Lock the tenant row for this transaction; returns its inbound token's hash. NotFound if unknown."""
        row = (
            await self._session.execute(
                select(Tenant.id, Tenant.inbound_token_hash).where(Tenant.id == tenant_id).with_for_update()
            )
        ).one_or_none()
        if row is None:
            raise tenant_not_found(tenant_id)
        token_hash: str | None = row.inbound_token_hash
        return token_hash

    async def _lock_connected_tenant(self, tenant_id: str) -> None:
        await self._lock_tenant(tenant_id)
        if not await self._has_outbound_settings(tenant_id):
            raise tenant_not_connected(tenant_id)

    async def _has_outbound_settings(self, tenant_id: str) -> bool:
        found = await self._session.scalar(
            select(OutboundSettings.tenant_id).where(OutboundSettings.tenant_id == tenant_id)
        )
        return found is not None

    # --- secrets (shared/secret_box.py) ----------------------------------------------------------

    def _require_settings(self) -> Settings:
        if self._settings is None:
            raise RuntimeError("TenantRepository needs the Settings to store or show secrets")
        return self._settings

    def _secrets(self) -> SecretBox:
        return self._require_settings().secret_box()

    async def _store_inbound_token(self, tenant_id: str, token: str) -> None:
        await store_inbound_token(self._session, self._secrets(), tenant_id, token)

    async def _read_inbound_token(self, tenant_id: str) -> str | None:
        encrypted = await self._session.scalar(select(Tenant.inbound_token_encrypted).where(Tenant.id == tenant_id))
        return self._decrypt_token(encrypted)

    def _decrypt_token(self, encrypted: str | None) -> str | None:
        return self._secrets().decrypt(encrypted) if encrypted else None


async def store_inbound_token(session: AsyncSession, box: SecretBox, tenant_id: str, token: str) -> None:
    """Store a tenant's inbound token: encrypted (shown to operators) and as its keyed hash (what
    Firehose authentication compares)."""
    await session.execute(
        update(Tenant)
        .where(Tenant.id == tenant_id)
        .values(inbound_token_encrypted=box.encrypt(token), inbound_token_hash=box.token_hash(token))
    )
