"""The per-process tenant configuration cache: incremental, exact refresh."""

from __future__ import annotations

import asyncio

from sqlalchemy import delete, event, update

from shared.credentials import hash_key, new_engine_key
from shared.db import create_engine, create_sessionmaker
from shared.models import InboundMapping, Tenant
from shared.tenants.config import TenantConfigCache, bump_config_revision
from tests.factories import make_tenant


async def test_refresh_loads_new_changed_and_drops_deleted_tenants(sessionmaker) -> None:
    cache = TenantConfigCache(sessionmaker, refresh_seconds=1)
    first = await make_tenant(
        sessionmaker, inbound_mappings=[{"loyalty_event": "a", "event_type": "custom_event", "event_name": "x"}]
    )
    second = await make_tenant(sessionmaker)
    assert await cache.refresh() is True
    assert cache.get(first.id).inbound_mappings[0].loyalty_event == "a"
    assert cache.get(second.id) is not None
    assert await cache.refresh() is False  # nothing moved

    async with sessionmaker() as session:
        await session.execute(
            update(InboundMapping).where(InboundMapping.tenant_id == first.id).values(loyalty_event="b")
        )
        await bump_config_revision(session, first.id)
        await session.execute(delete(Tenant).where(Tenant.id == second.id))
        await session.commit()
    assert await cache.refresh() is True
    assert cache.get(first.id).inbound_mappings[0].loyalty_event == "b"
    assert cache.get(second.id) is None


async def test_a_change_committed_after_a_later_revision_is_still_seen(sessionmaker) -> None:
    early = await make_tenant(sessionmaker)
    late = await make_tenant(sessionmaker)
    cache = TenantConfigCache(sessionmaker, refresh_seconds=1)
    await cache.refresh()

    # `early` takes its new revision first but commits last.
    async with sessionmaker() as slow, sessionmaker() as fast:
        await bump_config_revision(slow, early.id)
        await slow.execute(update(Tenant).where(Tenant.id == early.id).values(name="renamed early"))
        await bump_config_revision(fast, late.id)
        await fast.commit()
        assert await cache.refresh() is True
        await slow.commit()
    assert await cache.refresh() is True
    assert cache.get(early.id).name == "renamed early"


class TestEngineKeys:
    """The outbound API authenticates from the cache: by key hash, with grouped lookups on a miss."""

    async def test_a_cached_tenant_is_found_by_its_key_hash(self, sessionmaker) -> None:
        tenant = await make_tenant(sessionmaker)
        cache = TenantConfigCache(sessionmaker, refresh_seconds=1)
        await cache.refresh()
        config = cache.find_by_engine_key(hash_key(tenant.engine_api_key))
        assert config is not None and config.id == tenant.id
        assert cache.find_by_engine_key(hash_key("lbk_unknown")) is None

    async def test_a_new_tenants_key_works_before_the_next_refresh(self, sessionmaker) -> None:
        cache = TenantConfigCache(sessionmaker, refresh_seconds=3600)
        await cache.refresh()
        tenant = await make_tenant(sessionmaker)
        config = await cache.resolve_engine_key(hash_key(tenant.engine_api_key))
        assert config is not None and config.id == tenant.id
        assert await cache.resolve_engine_key(hash_key("lbk_unknown")) is None

    async def test_a_key_replaced_without_a_revision_bump_is_seen_by_a_reload(self, sessionmaker) -> None:
        tenant = await make_tenant(sessionmaker)
        cache = TenantConfigCache(sessionmaker, refresh_seconds=3600)
        await cache.refresh()
        old_hash, new_key = hash_key(tenant.engine_api_key), new_engine_key()
        async with sessionmaker() as session:
            await session.execute(
                update(Tenant).where(Tenant.id == tenant.id).values(engine_key_hash=hash_key(new_key))
            )
            await session.commit()
        assert await cache.refresh() is False  # the fingerprint did not move
        await cache.reload_engine_keys([old_hash])
        assert cache.find_by_engine_key(old_hash) is None
        config = cache.find_by_engine_key(hash_key(new_key))
        assert config is not None and config.id == tenant.id

    async def test_a_deleted_tenant_is_dropped_by_a_reload(self, sessionmaker) -> None:
        tenant = await make_tenant(sessionmaker)
        cache = TenantConfigCache(sessionmaker, refresh_seconds=3600)
        await cache.refresh()
        async with sessionmaker() as session:
            await session.execute(delete(Tenant).where(Tenant.id == tenant.id))
            await session.commit()
        await cache.reload_engine_keys([hash_key(tenant.engine_api_key)])
        assert cache.find_by_engine_key(hash_key(tenant.engine_api_key)) is None
        assert cache.get(tenant.id) is None

    async def test_concurrent_misses_share_one_lookup(self, settings) -> None:
        engine = create_engine(settings, application_name="tests-engine-key-misses", pool_size=2)
        statements: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        try:
            cache = TenantConfigCache(create_sessionmaker(engine), refresh_seconds=3600)
            await cache.refresh()
            statements.clear()
            found = await asyncio.gather(*(cache.resolve_engine_key(hash_key(f"lbk_bad-{n}")) for n in range(50)))
            assert found == [None] * 50
            assert len(statements) == 1
            # A second wave waits for the next lookup slot and again shares a single query.
            found = await asyncio.gather(*(cache.resolve_engine_key(hash_key(f"lbk_worse-{n}")) for n in range(50)))
            assert found == [None] * 50
            assert len(statements) == 2
        finally:
            await engine.dispose()
