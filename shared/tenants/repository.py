"""Tenants and their integration configuration: every statement of the admin configuration API.

Every write first locks the tenant row, so concurrent writes to one tenant's configuration (and a
disconnect) apply one after the other, and ends with bump_config_revision so every process's
TenantConfigCache reloads the tenant. Methods flush; the caller commits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.credentials import hash_key, new_engine_key, new_inbound_token
from shared.errors import Conflict, ErrorCode, NotFound, Unprocessable
from shared.models import (
    WAITING_STATUSES,
    ExternalEvent,
    InboundMapping,
    InboundSettings,
    OutboundMessage,
    OutboundSettings,
    SyncField,
    Tenant,
)
from shared.outbound_hosts import DestinationRefused
from shared.secret_box import SecretBox
from shared.settings import Settings
from shared.tenants.config import DEFAULT_INBOUND, bump_config_revision

ConfigListModel = TypeVar("ConfigListModel", SyncField, ExternalEvent, InboundMapping)

# Recorded as last_error on the waiting outbound messages a disconnect cancels.
DISCONNECT_REASON = "cancelled: the tenant was disconnected"

# What GET inbound-settings shows before the first PUT (CONTRACT §3 defaults).
DEFAULT_INBOUND_SETTINGS: dict[str, Any] = dataclasses.asdict(DEFAULT_INBOUND)


@dataclass(frozen=True)
class TenantSummary:
    id: str
    name: str
    created_at: datetime
    connected: bool
    outbound_paused_at: datetime | None = None


@dataclass(frozen=True)
class CreatedTenant:
    id: str
    name: str
    created_at: datetime
    connected: bool
    engine_api_key: str


@dataclass(frozen=True)
class OutboundSettingsView:
    """Outbound settings without the secret itself."""

    api_url: str
    api_key: str
    api_secret_set: bool
    development: bool
    sync_only_configured_identifiers: bool
    loyalty_identifier_field: str
    customer_identifier_field: str


@dataclass(frozen=True)
class InboundSettingsView:
    customer_identifier_field: str
    loyalty_identifier_field: str
    track_audience_data: bool
    auto_subscribe: bool
    max_data_age_hours: int
    authentication_token: str | None


@dataclass(frozen=True)
class DisconnectResult:
    cancelled_messages: int


def _not_found(tenant_id: str) -> NotFound:
    return NotFound(f"tenant {tenant_id!r} not found")


def _not_connected(tenant_id: str) -> Conflict:
    return Conflict(
        f"tenant {tenant_id!r} is not connected: save its outbound settings first", code=ErrorCode.NOT_CONNECTED
    )


def _outbound_view(row: OutboundSettings) -> OutboundSettingsView:
    return OutboundSettingsView(
        api_url=row.api_url,
        api_key=row.api_key,
        api_secret_set=bool(row.api_secret_encrypted),
        development=row.development,
        sync_only_configured_identifiers=row.sync_only_configured_identifiers,
        loyalty_identifier_field=row.loyalty_identifier_field,
        customer_identifier_field=row.customer_identifier_field,
    )


class TenantRepository:
    """Tenant lifecycle, credentials and configuration, always scoped to one tenant id."""

    def __init__(self, session: AsyncSession, settings: Settings | None = None) -> None:
        # Settings (SECRET_KEY, OUTBOUND_ALLOWED_HOSTS) are needed only by the methods that
        # store or show secrets and by save_outbound_settings; the others work without.
        self._session = session
        self._settings = settings

    # --- tenants ---------------------------------------------------------------------------------

    async def create_tenant(self, tenant_id: str, name: str) -> CreatedTenant:
        """Insert a tenant with a fresh engine key (returned once, stored as a hash); Conflict if it exists."""
        engine_key = new_engine_key()
        created_at = await self._session.scalar(
            pg_insert(Tenant)
            .values(id=tenant_id, name=name, engine_key_hash=hash_key(engine_key))
            .on_conflict_do_nothing(index_elements=[Tenant.id])
            .returning(Tenant.created_at)
        )
        if created_at is None:
            raise Conflict(f"tenant {tenant_id!r} already exists")
        return CreatedTenant(tenant_id, name, created_at, connected=False, engine_api_key=engine_key)

    async def list_tenants(self, *, after_id: str | None, limit: int) -> list[TenantSummary]:
        """Up to `limit` tenants ordered by id, starting after `after_id`."""
        stmt = self._summary_query().order_by(Tenant.id).limit(limit)
        if after_id is not None:
            stmt = stmt.where(Tenant.id > after_id)
        return [TenantSummary(*row) for row in (await self._session.execute(stmt)).all()]

    async def get_tenant(self, tenant_id: str) -> TenantSummary:
        row = (await self._session.execute(self._summary_query().where(Tenant.id == tenant_id))).one_or_none()
        if row is None:
            raise _not_found(tenant_id)
        return TenantSummary(*row)

    async def delete_tenant(self, tenant_id: str) -> None:
        """Delete the tenant; the foreign keys cascade to every row it owns."""
        deleted = await self._session.scalar(delete(Tenant).where(Tenant.id == tenant_id).returning(Tenant.id))
        if deleted is None:
            raise _not_found(tenant_id)

    async def rotate_engine_key(self, tenant_id: str) -> str:
        """Replace the engine key's hash (the old key stops matching) and return the new key."""
        await self._lock_tenant(tenant_id)
        engine_key = new_engine_key()
        await self._session.execute(
            update(Tenant).where(Tenant.id == tenant_id).values(engine_key_hash=hash_key(engine_key))
        )
        await bump_config_revision(self._session, tenant_id)
        return engine_key

    # --- connection: outbound and inbound settings -----------------------------------------------

    async def get_outbound_settings(self, tenant_id: str) -> OutboundSettingsView:
        """NotFound for an unknown tenant and for a tenant without outbound settings."""
        row = await self._session.scalar(select(OutboundSettings).where(OutboundSettings.tenant_id == tenant_id))
        if row is None:
            await self._require_tenant(tenant_id)
            raise NotFound(f"tenant {tenant_id!r} has no outbound settings")
        return _outbound_view(row)

    async def save_outbound_settings(
        self,
        tenant_id: str,
        *,
        api_url: str,
        api_key: str,
        api_secret: str | None,
        development: bool,
        sync_only_configured_identifiers: bool,
        loyalty_identifier_field: str,
        customer_identifier_field: str,
    ) -> OutboundSettingsView:
        """Upsert; `api_secret=None` keeps the stored secret (required on the first save).
        Issues the tenant's inbound token when it has none."""
        values: dict[str, Any] = {
            "api_url": api_url,
            "api_key": api_key,
            "development": development,
            "sync_only_configured_identifiers": sync_only_configured_identifiers,
            "loyalty_identifier_field": loyalty_identifier_field,
            "customer_identifier_field": customer_identifier_field,
        }
        token_hash = await self._lock_tenant(tenant_id)
        try:  # the SSRF guard at save time: scheme, host and port against the policy, no DNS
            self._require_settings().allowed_outbound_hosts().check_url(api_url)
        except DestinationRefused as refused:
            raise Unprocessable(f"api_url: {refused}") from None
        if api_secret is not None:
            values["api_secret_encrypted"] = self._secrets().encrypt(api_secret)
        if await self._has_outbound_settings(tenant_id):
            saved = await self._session.scalars(
                update(OutboundSettings)
                .where(OutboundSettings.tenant_id == tenant_id)
                .values(**values)
                .returning(OutboundSettings),
                execution_options={"populate_existing": True},
            )
        elif api_secret is None:
            raise Unprocessable("api_secret is required when outbound settings are saved for the first time")
        else:
            saved = await self._session.scalars(
                insert(OutboundSettings).values(tenant_id=tenant_id, **values).returning(OutboundSettings)
            )
        row = saved.one()
        if token_hash is None:
            await self._store_inbound_token(tenant_id, new_inbound_token())
        await bump_config_revision(self._session, tenant_id)
        return _outbound_view(row)

    async def get_inbound_settings(self, tenant_id: str) -> InboundSettingsView:
        """The saved inbound settings (the defaults before a first save) with the inbound token."""
        row = (
            await self._session.execute(
                select(Tenant.inbound_token_encrypted, OutboundSettings.tenant_id, InboundSettings)
                .outerjoin(OutboundSettings, OutboundSettings.tenant_id == Tenant.id)
                .outerjoin(InboundSettings, InboundSettings.tenant_id == Tenant.id)
                .where(Tenant.id == tenant_id)
            )
        ).one_or_none()
        if row is None:
            raise _not_found(tenant_id)
        token_encrypted, outbound_tenant_id, settings = row
        if outbound_tenant_id is None:
            raise _not_connected(tenant_id)
        return self._inbound_view(settings, self._decrypt_token(token_encrypted))

    async def save_inbound_settings(
        self,
        tenant_id: str,
        *,
        customer_identifier_field: str,
        loyalty_identifier_field: str,
        track_audience_data: bool,
        auto_subscribe: bool,
        max_data_age_hours: int = DEFAULT_INBOUND.max_data_age_hours,
    ) -> InboundSettingsView:
        """Upsert the inbound settings; Conflict NOT_CONNECTED while outbound settings are missing."""
        values = {
            "customer_identifier_field": customer_identifier_field,
            "loyalty_identifier_field": loyalty_identifier_field,
            "track_audience_data": track_audience_data,
            "auto_subscribe": auto_subscribe,
            "max_data_age_hours": max_data_age_hours,
        }
        await self._lock_connected_tenant(tenant_id)
        token = await self._read_inbound_token(tenant_id)
        upsert = (
            pg_insert(InboundSettings)
            .values(tenant_id=tenant_id, **values)
            .on_conflict_do_update(
                index_elements=[InboundSettings.tenant_id], set_={**values, "updated_at": func.now()}
            )
            .returning(InboundSettings)
        )
        settings = (await self._session.scalars(upsert, execution_options={"populate_existing": True})).one()
        await bump_config_revision(self._session, tenant_id)
        return self._inbound_view(settings, token)

    async def rotate_inbound_token(self, tenant_id: str) -> str:
        """A new inbound token (the old one stops authenticating); Conflict NOT_CONNECTED if not connected."""
        await self._lock_connected_tenant(tenant_id)
        token = new_inbound_token()
        await self._store_inbound_token(tenant_id, token)
        await bump_config_revision(self._session, tenant_id)
        return token

    async def disconnect(self, tenant_id: str) -> DisconnectResult:
        """Remove both directions' settings and mappings, revoke the inbound token and cancel waiting
        outbound messages. Customers, ledger, lists, logs and finished messages stay. Idempotent."""
        await self._lock_tenant(tenant_id)
        for model in (OutboundSettings, InboundSettings, SyncField, ExternalEvent, InboundMapping):
            await self._session.execute(delete(model).where(model.tenant_id == tenant_id))
        await self._session.execute(
            update(Tenant).where(Tenant.id == tenant_id).values(inbound_token_encrypted=None, inbound_token_hash=None)
        )
        cancelled = await self._session.scalars(
            update(OutboundMessage)
            .where(OutboundMessage.tenant_id == tenant_id, OutboundMessage.status.in_(WAITING_STATUSES))
            .values(status="cancelled", last_error=DISCONNECT_REASON, next_attempt_at=None, lease_expires_at=None)
            .returning(OutboundMessage.id)
        )
        await bump_config_revision(self._session, tenant_id)
        return DisconnectResult(cancelled_messages=len(cancelled.all()))

    # --- ordered configuration lists (replaced as a whole) ---------------------------------------

    async def list_sync_fields(self, tenant_id: str) -> Sequence[SyncField]:
        return await self._read_list(SyncField, tenant_id)

    async def replace_sync_fields(self, tenant_id: str, items: list[dict[str, Any]]) -> Sequence[SyncField]:
        return await self._replace_list(SyncField, tenant_id, items)

    async def list_external_events(self, tenant_id: str) -> Sequence[ExternalEvent]:
        return await self._read_list(ExternalEvent, tenant_id)

    async def replace_external_events(self, tenant_id: str, items: list[dict[str, Any]]) -> Sequence[ExternalEvent]:
        return await self._replace_list(ExternalEvent, tenant_id, items)

    async def list_inbound_mappings(self, tenant_id: str) -> Sequence[InboundMapping]:
        return await self._read_list(InboundMapping, tenant_id)

    async def replace_inbound_mappings(self, tenant_id: str, items: list[dict[str, Any]]) -> Sequence[InboundMapping]:
        return await self._replace_list(InboundMapping, tenant_id, items)

    # --- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _summary_query() -> Any:
        connected = exists().where(OutboundSettings.tenant_id == Tenant.id).label("connected")
        return select(Tenant.id, Tenant.name, Tenant.created_at, connected, Tenant.outbound_paused_at)

    @staticmethod
    def _inbound_view(settings: InboundSettings | None, token: str | None) -> InboundSettingsView:
        if settings is None:
            return InboundSettingsView(**DEFAULT_INBOUND_SETTINGS, authentication_token=token)
        return InboundSettingsView(
            customer_identifier_field=settings.customer_identifier_field,
            loyalty_identifier_field=settings.loyalty_identifier_field,
            track_audience_data=settings.track_audience_data,
            auto_subscribe=settings.auto_subscribe,
            max_data_age_hours=settings.max_data_age_hours,
            authentication_token=token,
        )

    async def _require_tenant(self, tenant_id: str) -> None:
        if await self._session.scalar(select(Tenant.id).where(Tenant.id == tenant_id)) is None:
            raise _not_found(tenant_id)

    async def _lock_tenant(self, tenant_id: str) -> str | None:
        """Lock the tenant row for this transaction; returns its inbound token's hash. NotFound if unknown."""
        row = (
            await self._session.execute(
                select(Tenant.id, Tenant.inbound_token_hash).where(Tenant.id == tenant_id).with_for_update()
            )
        ).one_or_none()
        if row is None:
            raise _not_found(tenant_id)
        token_hash: str | None = row.inbound_token_hash
        return token_hash

    # --- secrets (shared/secret_box.py) ----------------------------------------------------------

    def _require_settings(self) -> Settings:
        if self._settings is None:
            raise RuntimeError("TenantRepository needs the Settings to store or show secrets")
        return self._settings

    def _secrets(self) -> SecretBox:
        return self._require_settings().secret_box()

    async def _store_inbound_token(self, tenant_id: str, token: str) -> None:
        box = self._secrets()
        await self._session.execute(
            update(Tenant)
            .where(Tenant.id == tenant_id)
            .values(inbound_token_encrypted=box.encrypt(token), inbound_token_hash=box.token_hash(token))
        )

    async def _read_inbound_token(self, tenant_id: str) -> str | None:
        encrypted = await self._session.scalar(select(Tenant.inbound_token_encrypted).where(Tenant.id == tenant_id))
        return self._decrypt_token(encrypted)

    def _decrypt_token(self, encrypted: str | None) -> str | None:
        return self._secrets().decrypt(encrypted) if encrypted else None

    async def _lock_connected_tenant(self, tenant_id: str) -> None:
        await self._lock_tenant(tenant_id)
        if not await self._has_outbound_settings(tenant_id):
            raise _not_connected(tenant_id)

    async def _has_outbound_settings(self, tenant_id: str) -> bool:
        found = await self._session.scalar(
            select(OutboundSettings.tenant_id).where(OutboundSettings.tenant_id == tenant_id)
        )
        return found is not None

    async def _read_list(self, model: type[ConfigListModel], tenant_id: str) -> Sequence[ConfigListModel]:
        await self._require_tenant(tenant_id)
        return await self._ordered_rows(model, tenant_id)

    async def _replace_list(
        self, model: type[ConfigListModel], tenant_id: str, items: list[dict[str, Any]]
    ) -> Sequence[ConfigListModel]:
        await self._lock_tenant(tenant_id)
        await self._session.execute(delete(model).where(model.tenant_id == tenant_id))
        if items:
            rows = [{**item, "tenant_id": tenant_id, "position": position} for position, item in enumerate(items)]
            await self._session.execute(insert(model), rows)
        await bump_config_revision(self._session, tenant_id)
        return await self._ordered_rows(model, tenant_id)

    async def _ordered_rows(self, model: type[ConfigListModel], tenant_id: str) -> Sequence[ConfigListModel]:
        rows = await self._session.scalars(
            select(model)
            .where(model.tenant_id == tenant_id)
            .order_by(model.position)
            .execution_options(populate_existing=True)
        )
        return rows.all()
