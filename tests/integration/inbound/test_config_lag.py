"""A request accepted right after its tenant was connected is applied, not refused as
disconnected, although the worker's cached snapshot predates the connection."""

from __future__ import annotations

import time

import orjson
from sqlalchemy import func, select

from shared.credentials import new_inbound_token
from shared.models import InboundSettings, IncomingError, LedgerEvent, OutboundSettings, Tenant
from shared.queues.firehose import QueuedRequest
from shared.secret_box import secret_box_for
from shared.tenants.config import TenantConfigCache, bump_config_revision
from tests.conftest import SECRET_KEY
from tests.factories import TenantFixture, make_tenant
from tests.inbound_helpers import custom_event, event_request
from worker.inbound.batch import apply_firehose_batch


async def test_request_of_a_just_connected_tenant_is_applied(sessionmaker) -> None:
    unconnected = await make_tenant(
        sessionmaker,
        connected=False,
        inbound_mappings=[{"loyalty_event": "visit", "event_type": "custom_event", "event_name": "store_visit"}],
    )
    worker_cache = TenantConfigCache(sessionmaker, refresh_seconds=60)  # polls far too rarely to help
    await worker_cache.refresh()
    assert worker_cache.get(unconnected.id).connected is False

    token = new_inbound_token()
    async with sessionmaker() as session:  # what saving the settings in the admin API does
        session.add(
            OutboundSettings(
                tenant_id=unconnected.id,
                api_url="https://s2s.mparticle.com",
                api_key="k",
                api_secret_encrypted=secret_box_for(SECRET_KEY).encrypt("s"),
                development=False,
                sync_only_configured_identifiers=False,
                loyalty_identifier_field="id",
                customer_identifier_field="customer_id",
            )
        )
        session.add(
            InboundSettings(
                tenant_id=unconnected.id,
                customer_identifier_field="customer",
                loyalty_identifier_field="id",
                track_audience_data=False,
                auto_subscribe=True,
            )
        )
        tenant_row = await session.get(Tenant, unconnected.id)
        tenant_row.inbound_token_encrypted = secret_box_for(SECRET_KEY).encrypt(token)
        tenant_row.inbound_token_hash = secret_box_for(SECRET_KEY).token_hash(token)
        await bump_config_revision(session, unconnected.id)
        await session.commit()

    tenant = TenantFixture(id=unconnected.id, engine_api_key=unconnected.engine_api_key, inbound_token=token)
    body = orjson.dumps(event_request(tenant, custom_event("store_visit"), customer="C-lag")).decode()
    await apply_firehose_batch(
        sessionmaker,
        worker_cache,
        [QueuedRequest(tenant.id, "r-lag", body, received_at_ms=int(time.time() * 1000), member="m-1")],
    )

    async with sessionmaker() as session:
        ledger = await session.scalar(select(func.count()).where(LedgerEvent.tenant_id == tenant.id))
        errors = (
            await session.scalars(select(IncomingError.error_code).where(IncomingError.tenant_id == tenant.id))
        ).all()
    assert ledger == 1
    assert errors == []
