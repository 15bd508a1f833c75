"""Tenants and their integration configuration: every statement of the admin configuration API.

Every write first locks the tenant row, so concurrent writes to one tenant's configuration (and a
disconnect) apply one after the other, and ends with bump_config_revision so every process's
TenantConfigCache reloads the tenant. Methods flush; the caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.credentials import hash_key, new_engine_key, new_inbound_token
from shared.errors import Conflict, NotFound, Unprocessable
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
from shared.outbound.hosts import DestinationRefused
from shared.tenants.config import DEFAULT_INBOUND, InboundConfig, OutboundConfig, bump_config_revision, snapshot_of
from shared.tenants.rows import TenantRows, tenant_not_connected, tenant_not_found

# The ordered configuration lists, each replaced as a whole.
ConfigListModel = TypeVar("ConfigListModel", SyncField, ExternalEvent, InboundMapping)

# Recorded as last_error on the waiting outbound messages a disconnect cancels.
DISCONNECT_REASON = "cancelled: the tenant was disconnected"


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
class InboundSettingsView:
    """The inbound settings (the defaults before a first save) and the token to paste into mParticle."""

    settings: InboundConfig
    authentication_token: str | None


@dataclass(frozen=True)
class DisconnectResult:
    cancelled_messages: int


class TenantRepository(TenantRows):
    """Tenant lifecycle, credentials and configuration, always scoped to one tenant id."""

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
            raise tenant_not_found(tenant_id)
        return TenantSummary(*row)

    async def delete_tenant(self, tenant_id: str) -> None:
        """Delete the tenant; the foreign keys cascade to every row it owns."""
        deleted = await self._session.scalar(delete(Tenant).where(Tenant.id == tenant_id).returning(Tenant.id))
        if deleted is None:
            raise tenant_not_found(tenant_id)

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

    async def get_outbound_settings(self, tenant_id: str) -> OutboundConfig:
        """NotFound for an unknown tenant and for a tenant without outbound settings."""
        row = await self._session.scalar(select(OutboundSettings).where(OutboundSettings.tenant_id == tenant_id))
        if row is None:
            await self._require_tenant(tenant_id)
            raise NotFound(f"tenant {tenant_id!r} has no outbound settings")
        return snapshot_of(OutboundConfig, row)

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
    ) -> OutboundConfig:
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
        return snapshot_of(OutboundConfig, row)

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
            raise tenant_not_found(tenant_id)
        token_encrypted, outbound_tenant_id, settings = row
        if outbound_tenant_id is None:
            raise tenant_not_connected(tenant_id)
        return _inbound_view(settings, self._decrypt_token(token_encrypted))

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
        return _inbound_view(settings, token)

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

    async def read_list(self, model: type[ConfigListModel], tenant_id: str) -> Sequence[ConfigListModel]:
        """The tenant's `model` rows (sync fields, external events or inbound mappings) in order."""
        await self._require_tenant(tenant_id)
        return await self._ordered_rows(model, tenant_id)

    async def replace_list(
        self, model: type[ConfigListModel], tenant_id: str, items: list[dict[str, Any]]
    ) -> Sequence[ConfigListModel]:
        """Replace the tenant's `model` rows by `items`, in their order."""
        await self._lock_tenant(tenant_id)
        await self._session.execute(delete(model).where(model.tenant_id == tenant_id))
        if items:
            rows = [{**item, "tenant_id": tenant_id, "position": position} for position, item in enumerate(items)]
            await self._session.execute(insert(model), rows)
        await bump_config_revision(self._session, tenant_id)
        return await self._ordered_rows(model, tenant_id)

    # --- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _summary_query() -> Any:
        connected = exists().where(OutboundSettings.tenant_id == Tenant.id).label("connected")
        return select(Tenant.id, Tenant.name, Tenant.created_at, connected, Tenant.outbound_paused_at)

    async def _ordered_rows(self, model: type[ConfigListModel], tenant_id: str) -> Sequence[ConfigListModel]:
        rows = await self._session.scalars(
            select(model)
            .where(model.tenant_id == tenant_id)
            .order_by(model.position)
            .execution_options(populate_existing=True)
        )
        return rows.all()


def _inbound_view(settings: InboundSettings | None, token: str | None) -> InboundSettingsView:
    return InboundSettingsView(
        settings=snapshot_of(InboundConfig, settings) if settings else DEFAULT_INBOUND, authentication_token=token
    )
