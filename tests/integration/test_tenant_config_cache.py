"""The per-process tenant configuration cache: incremental, exact refresh."""

from __future__ import annotations

from sqlalchemy import delete, update

from shared.models import InboundMapping, Tenant
from shared.tenant_config import TenantConfigCache, bump_config_revision
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
