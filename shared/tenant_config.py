"""Immutable snapshots of a tenant's configuration, loaded from PostgreSQL and cached per process.

The proxy authenticates Firehose calls and computes priorities from this cache, so its success
path touches no database; the worker maps events with it. A change reaches every process within
CONFIG_CACHE_SECONDS: each process polls a fingerprint of the tenants' config revisions and reloads
only the tenants whose revision moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import (
    ExternalEvent,
    InboundMapping,
    InboundSettings,
    OutboundSettings,
    SyncField,
    Tenant,
    config_revision_seq,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboundConfig:
    api_url: str
    api_key: str
    api_secret: str
    development: bool
    sync_only_configured_identifiers: bool
    loyalty_identifier_field: str
    customer_identifier_field: str


@dataclass(frozen=True)
class InboundConfig:
    customer_identifier_field: str
    loyalty_identifier_field: str
    track_audience_data: bool
    auto_subscribe: bool


@dataclass(frozen=True)
class SyncFieldConfig:
    loyalty_field: str
    remote_field: str


@dataclass(frozen=True)
class ExternalEventConfig:
    loyalty_event: str
    event_name: str
    custom_event_type: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class InboundMappingConfig:
    loyalty_event: str
    event_type: str
    event_name: str | None
    priority: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class TenantConfig:
    """Everything a process needs to know about one tenant, as of `config_revision`."""

    id: str
    name: str
    config_revision: int
    inbound_token: str | None
    outbound: OutboundConfig | None
    inbound: InboundConfig | None
    sync_fields: tuple[SyncFieldConfig, ...] = ()
    external_events: tuple[ExternalEventConfig, ...] = ()
    inbound_mappings: tuple[InboundMappingConfig, ...] = ()

    @property
    def connected(self) -> bool:
        """A tenant is connected once its outbound settings are saved (and until disconnect)."""
        return self.outbound is not None


async def load_tenant_configs(session: AsyncSession, tenant_ids: list[str] | None = None) -> dict[str, TenantConfig]:
    """Load configuration snapshots for all tenants, or only `tenant_ids`."""

    def scoped(stmt: Any, column: Any) -> Any:
        return stmt.where(column.in_(tenant_ids)) if tenant_ids is not None else stmt

    tenants = (await session.scalars(scoped(select(Tenant), Tenant.id))).all()
    outbound = {
        row.tenant_id: row
        for row in (await session.scalars(scoped(select(OutboundSettings), OutboundSettings.tenant_id))).all()
    }
    inbound = {
        row.tenant_id: row
        for row in (await session.scalars(scoped(select(InboundSettings), InboundSettings.tenant_id))).all()
    }
    sync_fields: dict[str, list[SyncFieldConfig]] = {}
    for sf in (
        await session.scalars(scoped(select(SyncField), SyncField.tenant_id).order_by(SyncField.position))
    ).all():
        sync_fields.setdefault(sf.tenant_id, []).append(SyncFieldConfig(sf.loyalty_field, sf.remote_field))
    external_events: dict[str, list[ExternalEventConfig]] = {}
    for ee in (
        await session.scalars(scoped(select(ExternalEvent), ExternalEvent.tenant_id).order_by(ExternalEvent.position))
    ).all():
        external_events.setdefault(ee.tenant_id, []).append(
            ExternalEventConfig(ee.loyalty_event, ee.event_name, ee.custom_event_type, dict(ee.attributes))
        )
    mappings: dict[str, list[InboundMappingConfig]] = {}
    for im in (
        await session.scalars(
            scoped(select(InboundMapping), InboundMapping.tenant_id).order_by(InboundMapping.position)
        )
    ).all():
        mappings.setdefault(im.tenant_id, []).append(
            InboundMappingConfig(im.loyalty_event, im.event_type, im.event_name, im.priority, dict(im.attributes))
        )

    result: dict[str, TenantConfig] = {}
    for tenant in tenants:
        out = outbound.get(tenant.id)
        inb = inbound.get(tenant.id)
        result[tenant.id] = TenantConfig(
            id=tenant.id,
            name=tenant.name,
            config_revision=tenant.config_revision,
            inbound_token=tenant.inbound_token,
            outbound=OutboundConfig(
                api_url=out.api_url,
                api_key=out.api_key,
                api_secret=out.api_secret,
                development=out.development,
                sync_only_configured_identifiers=out.sync_only_configured_identifiers,
                loyalty_identifier_field=out.loyalty_identifier_field,
                customer_identifier_field=out.customer_identifier_field,
            )
            if out
            else None,
            inbound=InboundConfig(
                customer_identifier_field=inb.customer_identifier_field,
                loyalty_identifier_field=inb.loyalty_identifier_field,
                track_audience_data=inb.track_audience_data,
                auto_subscribe=inb.auto_subscribe,
            )
            if inb
            else None,
            sync_fields=tuple(sync_fields.get(tenant.id, ())),
            external_events=tuple(external_events.get(tenant.id, ())),
            inbound_mappings=tuple(mappings.get(tenant.id, ())),
        )
    return result


async def bump_config_revision(session: AsyncSession, tenant_id: str) -> None:
    """Mark a tenant's configuration as changed so every process's cache reloads it."""
    await session.execute(
        update(Tenant).where(Tenant.id == tenant_id).values(config_revision=config_revision_seq.next_value())
    )


class TenantConfigCache:
    """Per-process cache of every tenant's configuration, refreshed by polling a revision counter."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], refresh_seconds: float) -> None:
        self._sessionmaker = sessionmaker
        self._refresh_seconds = refresh_seconds
        self._configs: dict[str, TenantConfig] = {}
        self._fingerprint: tuple[int, int] | None = None  # (tenant count, sum of config revisions)
        self._task: asyncio.Task[None] | None = None

    def get(self, tenant_id: str) -> TenantConfig | None:
        """The cached configuration of `tenant_id`, or None when no such tenant is known."""
        return self._configs.get(tenant_id)

    async def refresh(self) -> bool:
        """Reload the tenants that were added or changed and drop deleted ones; True when anything moved.

        The fingerprint is (count, sum of revisions). Revisions only grow and come from one sequence,
        so every commit that changes a tenant changes the sum, even one that commits after a later
        revision was already seen (max() alone would miss that).
        """
        async with self._sessionmaker() as session:
            row = (
                await session.execute(select(func.count(), func.coalesce(func.sum(Tenant.config_revision), 0)))
            ).one()
            fingerprint = (int(row[0]), int(row[1]))
            if fingerprint == self._fingerprint:
                return False
            revisions: dict[str, int] = {
                tenant_id: revision
                for tenant_id, revision in (await session.execute(select(Tenant.id, Tenant.config_revision))).all()
            }
            stale = [
                tenant_id
                for tenant_id, revision in revisions.items()
                if (cached := self._configs.get(tenant_id)) is None or cached.config_revision != revision
            ]
            configs = {tenant_id: config for tenant_id, config in self._configs.items() if tenant_id in revisions}
            if stale:
                configs.update(await load_tenant_configs(session, stale))
            self._configs = configs
            self._fingerprint = fingerprint
            return True

    async def start(self) -> None:
        """Load once (best effort) and keep refreshing in the background."""
        with contextlib.suppress(Exception):
            await self.refresh()
        self._task = asyncio.create_task(self._refresh_forever(), name="tenant-config-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _refresh_forever(self) -> None:
        # Poll twice per period so a change is seen within CONFIG_CACHE_SECONDS.
        interval = self._refresh_seconds / 2
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception as exc:  # keep serving the last good snapshot through a database outage
                logger.warning("tenant config refresh failed: %s", exc.__class__.__name__)
