"""Immutable snapshots of a tenant's configuration, loaded from PostgreSQL and cached per process.

The proxy authenticates Firehose calls and computes priorities from this cache, so its success
path touches no database; the worker maps events with it. A change reaches every process within
CONFIG_CACHE_SECONDS: each process polls a fingerprint of the tenants' config revisions and reloads
only the tenants whose revision moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.logging import get_logger
from shared.mapping.inbound import DEFAULT_MAX_DATA_AGE_HOURS, MappingRule
from shared.mapping.outbound import ExternalEventRule, SyncFieldRule
from shared.models import (
    ExternalEvent,
    InboundMapping,
    InboundSettings,
    OutboundSettings,
    SyncField,
    Tenant,
    config_revision_seq,
)
from shared.tasks import cancel_and_wait
from shared.transient import RetryDelays, call_retrying, is_transient_database_error

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

logger = get_logger(__name__)

REFRESH_RETRY_MAX_DELAY_SECONDS = 2.0

Snapshot = TypeVar("Snapshot", bound="DataclassInstance")


@dataclass(frozen=True)
class OutboundConfig:
    api_url: str
    api_key: str
    # Ciphertext (shared/secret_box.py): the worker decrypts it with SECRET_KEY when it sends.
    api_secret_encrypted: str
    development: bool
    sync_only_configured_identifiers: bool
    loyalty_identifier_field: str
    customer_identifier_field: str


@dataclass(frozen=True)
class InboundConfig:
    """A tenant's inbound settings; the defaults are those of a tenant that never saved any."""

    customer_identifier_field: str = "customer"
    loyalty_identifier_field: str = "id"
    track_audience_data: bool = False
    auto_subscribe: bool = False
    max_data_age_hours: int = DEFAULT_MAX_DATA_AGE_HOURS


# Inbound settings of a connected tenant that never saved any: what the worker applies and what
# the admin API shows and takes as defaults (CONTRACT §3, §8).
DEFAULT_INBOUND = InboundConfig()


@dataclass(frozen=True)
class TenantConfig:
    """Everything a process needs to know about one tenant, as of `config_revision`."""

    id: str
    name: str
    config_revision: int
    # Keyed hash of the inbound token (never the token): SecretBox.token_matches checks a presented one.
    inbound_token_hash: str | None
    outbound: OutboundConfig | None
    inbound: InboundConfig | None
    sync_fields: tuple[SyncFieldRule, ...] = ()
    external_events: tuple[ExternalEventRule, ...] = ()
    inbound_mappings: tuple[MappingRule, ...] = ()
    # SHA-256 of the engine API key (never the key itself): the outbound API authenticates from it.
    engine_key_hash: str = ""

    @property
    def connected(self) -> bool:
        """A tenant is connected once its outbound settings are saved (and until disconnect)."""
        return self.outbound is not None

    @property
    def inbound_or_default(self) -> InboundConfig:
        """The saved inbound settings, else DEFAULT_INBOUND."""
        return self.inbound or DEFAULT_INBOUND


def snapshot_of(config_class: type[Snapshot], row: Any) -> Snapshot:
    """A `config_class` snapshot of the stored `row`: each field from the attribute of that name
    (JSON objects copied, so the snapshot shares nothing with the session)."""
    values = {field.name: getattr(row, field.name) for field in dataclasses.fields(config_class)}
    return config_class(**{name: dict(value) if isinstance(value, dict) else value for name, value in values.items()})


async def load_tenant_configs(session: AsyncSession, tenant_ids: list[str] | None = None) -> dict[str, TenantConfig]:
    """Load configuration snapshots for all tenants, or only `tenant_ids`."""

    def scoped(stmt: Any, column: Any) -> Any:
        return stmt.where(column.in_(tenant_ids)) if tenant_ids is not None else stmt

    async def by_tenant(model: Any, config_class: type[Snapshot]) -> dict[str, list[Snapshot]]:
        stmt = scoped(select(model), model.tenant_id)
        if hasattr(model, "position"):
            stmt = stmt.order_by(model.position)
        grouped: dict[str, list[Snapshot]] = {}
        for row in (await session.scalars(stmt)).all():
            grouped.setdefault(row.tenant_id, []).append(snapshot_of(config_class, row))
        return grouped

    tenants = (await session.scalars(scoped(select(Tenant), Tenant.id))).all()
    outbound = await by_tenant(OutboundSettings, OutboundConfig)
    inbound = await by_tenant(InboundSettings, InboundConfig)
    sync_fields = await by_tenant(SyncField, SyncFieldRule)
    external_events = await by_tenant(ExternalEvent, ExternalEventRule)
    mappings = await by_tenant(InboundMapping, MappingRule)
    return {
        tenant.id: TenantConfig(
            id=tenant.id,
            name=tenant.name,
            config_revision=tenant.config_revision,
            inbound_token_hash=tenant.inbound_token_hash,
            outbound=outbound[tenant.id][0] if tenant.id in outbound else None,
            inbound=inbound[tenant.id][0] if tenant.id in inbound else None,
            sync_fields=tuple(sync_fields.get(tenant.id, ())),
            external_events=tuple(external_events.get(tenant.id, ())),
            inbound_mappings=tuple(mappings.get(tenant.id, ())),
            engine_key_hash=tenant.engine_key_hash,
        )
        for tenant in tenants
    }


async def bump_config_revision(session: AsyncSession, tenant_id: str) -> None:
    """Mark a tenant's configuration as changed so every process's cache reloads it."""
    await session.execute(
        update(Tenant).where(Tenant.id == tenant_id).values(config_revision=config_revision_seq.next_value())
    )


# An engine key the cache does not know is looked up in PostgreSQL before it is refused, so a new
# or rotated key works at once. Misses are grouped into one lookup at most this often, so a flood
# of bad keys costs the database at most a few queries per second.
ENGINE_KEY_MISS_INTERVAL_SECONDS = 0.1
MAX_MISSED_KEYS_PER_LOOKUP = 1000


class TenantConfigCache:
    """Per-process cache of every tenant's configuration, refreshed by polling a revision counter."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], refresh_seconds: float) -> None:
        self._sessionmaker = sessionmaker
        self._refresh_seconds = refresh_seconds
        self._configs: dict[str, TenantConfig] = {}
        self._by_engine_key: dict[str, TenantConfig] = {}
        self._fingerprint: tuple[int, int] | None = None  # (tenant count, sum of config revisions)
        self._task: asyncio.Task[None] | None = None
        # Refreshes and engine-key reloads replace the snapshot one at a time.
        self._write_lock = asyncio.Lock()
        self._missed_keys: set[str] = set()
        self._next_miss_lookup: asyncio.Task[None] | None = None
        self._running_miss_lookup: asyncio.Task[None] | None = None
        self._last_miss_lookup_at = -math.inf

    def get(self, tenant_id: str) -> TenantConfig | None:
        """The cached configuration of `tenant_id`, or None when no such tenant is known."""
        return self._configs.get(tenant_id)

    def find_by_engine_key(self, engine_key_hash: str) -> TenantConfig | None:
        """The cached tenant whose engine key hashes to `engine_key_hash` (no database access)."""
        return self._by_engine_key.get(engine_key_hash)

    async def resolve_engine_key(self, engine_key_hash: str) -> TenantConfig | None:
        """The tenant owning `engine_key_hash`: from the cache, else after a database lookup that
        concurrent misses share and that runs at most every ENGINE_KEY_MISS_INTERVAL_SECONDS."""
        config = self._by_engine_key.get(engine_key_hash)
        if config is not None:
            return config
        return await self.look_up_engine_key(engine_key_hash)

    async def look_up_engine_key(self, engine_key_hash: str) -> TenantConfig | None:
        """The tenant owning `engine_key_hash` as PostgreSQL has it now, reloaded whatever its
        revision: one lookup shared by concurrent callers, at most every ENGINE_KEY_MISS_INTERVAL_SECONDS."""
        if len(self._missed_keys) < MAX_MISSED_KEYS_PER_LOOKUP:
            self._missed_keys.add(engine_key_hash)
        lookup = self._next_miss_lookup
        if lookup is None:
            lookup = asyncio.create_task(self._look_up_missed_keys(self._running_miss_lookup))
            lookup.add_done_callback(_consume_exception)
            self._next_miss_lookup = lookup
        await asyncio.shield(lookup)
        return self._by_engine_key.get(engine_key_hash)

    async def reload_engine_keys(self, engine_key_hashes: Collection[str]) -> None:
        """Reload, whatever their revision, the tenants owning `engine_key_hashes` in PostgreSQL or
        in the cache: a key replaced or a tenant deleted is then seen exactly."""
        if not engine_key_hashes:
            return
        async with self._write_lock, self._sessionmaker() as session:
            owners = set(
                await session.scalars(select(Tenant.id).where(Tenant.engine_key_hash.in_(list(engine_key_hashes))))
            )
            owners.update(
                cached.id for key_hash in engine_key_hashes if (cached := self._by_engine_key.get(key_hash)) is not None
            )
            if not owners:
                return
            loaded = await load_tenant_configs(session, sorted(owners))
            configs = {tenant_id: config for tenant_id, config in self._configs.items() if tenant_id not in owners}
            configs.update(loaded)
            self._install(configs)

    async def refresh(self) -> bool:
        """Reload the tenants that were added or changed and drop deleted ones; True when anything moved.

        The fingerprint is (count, sum of revisions). Revisions only grow and come from one sequence,
        so every commit that changes a tenant changes the sum, even one that commits after a later
        revision was already seen (max() alone would miss that).
        """
        async with self._write_lock, self._sessionmaker() as session:
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
            self._install(configs)
            self._fingerprint = fingerprint
            return True

    async def start(self) -> None:
        """Load once (best effort) and keep refreshing in the background."""
        with contextlib.suppress(Exception):
            await self.refresh()
        self._task = asyncio.create_task(self._refresh_forever(), name="tenant-config-refresh")

    async def stop(self) -> None:
        for task in (self._task, self._next_miss_lookup, self._running_miss_lookup):
            if task is not None and not task.done():
                await cancel_and_wait(task)
        self._task = None

    def _install(self, configs: dict[str, TenantConfig]) -> None:
        self._configs = configs
        self._by_engine_key = {config.engine_key_hash: config for config in configs.values() if config.engine_key_hash}

    async def _look_up_missed_keys(self, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        loop = asyncio.get_running_loop()
        delay = self._last_miss_lookup_at + ENGINE_KEY_MISS_INTERVAL_SECONDS - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        # Misses from here on wait for the next lookup.
        keys, self._missed_keys = self._missed_keys, set()
        self._next_miss_lookup = None
        self._running_miss_lookup = asyncio.current_task()
        try:
            await self.reload_engine_keys(keys)
        finally:
            self._last_miss_lookup_at = loop.time()

    async def _refresh_forever(self) -> None:
        # Poll twice per period so a change is seen within CONFIG_CACHE_SECONDS. Through a database
        # outage the last good snapshot keeps serving (from memory) while refreshes back off, up to
        # REFRESH_RETRY_MAX_DELAY_SECONDS apart.
        interval = self._refresh_seconds / 2
        while True:
            await asyncio.sleep(interval)
            try:
                delays = RetryDelays(
                    first_delay_seconds=interval, max_delay_seconds=max(interval, REFRESH_RETRY_MAX_DELAY_SECONDS)
                )
                await call_retrying(
                    "tenant config refresh", self.refresh, retry_on=is_transient_database_error, delays=delays
                )
            except Exception as exc:  # not an outage: keep the last good snapshot all the same
                logger.warning("tenant_config_refresh_failed", error=exc.__class__.__name__)


def _consume_exception(task: asyncio.Task[None]) -> None:
    # Waiters see a failed lookup through their own await; this keeps a lookup nobody awaited
    # any more (its requests were cancelled) from being reported as "never retrieved".
    if not task.cancelled():
        task.exception()
