"""Plain async factories that arrange data directly in PostgreSQL (tests of the admin API itself
go through HTTP instead). Every tenant gets a random id, so tests never share data."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.credentials import hash_key, new_engine_key, new_inbound_token
from shared.models import (
    ExternalEvent,
    InboundMapping,
    InboundSettings,
    OutboundSettings,
    SyncField,
    Tenant,
)
from shared.secret_box import secret_box_for
from tests.conftest import SECRET_KEY


@dataclass(frozen=True)
class TenantFixture:
    id: str
    engine_api_key: str
    inbound_token: str | None


def random_tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def make_tenant(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    tenant_id: str | None = None,
    outbound: dict[str, Any] | None = None,
    connected: bool = True,
    inbound: dict[str, Any] | None = None,
    inbound_mappings: list[dict[str, Any]] | None = None,
    sync_fields: list[dict[str, str]] | None = None,
    external_events: list[dict[str, Any]] | None = None,
) -> TenantFixture:
    """A tenant with (by default) outbound settings, an inbound token and default inbound settings.

    `outbound`/`inbound` override single fields; `connected=False` leaves the tenant unconfigured.
    """
    tenant_id = tenant_id or random_tenant_id()
    engine_key = new_engine_key()
    token = new_inbound_token() if connected else None
    box = secret_box_for(SECRET_KEY)
    async with sessionmaker() as session:
        session.add(
            Tenant(
                id=tenant_id,
                name=f"Tenant {tenant_id}",
                engine_key_hash=hash_key(engine_key),
                inbound_token_encrypted=box.encrypt(token) if token else None,
                inbound_token_hash=box.token_hash(token) if token else None,
            )
        )
        await session.flush()
        if connected:
            outbound_values = {"api_secret": "s2s-secret", **(outbound or {})}
            api_secret = outbound_values.pop("api_secret")
            session.add(
                OutboundSettings(
                    tenant_id=tenant_id,
                    api_secret_encrypted=box.encrypt(api_secret),
                    **{
                        "api_url": "https://s2s.mparticle.com",
                        "api_key": "s2s-key",
                        "development": False,
                        "sync_only_configured_identifiers": False,
                        "loyalty_identifier_field": "id",
                        "customer_identifier_field": "customer_id",
                        **outbound_values,
                    },
                )
            )
            session.add(
                InboundSettings(
                    tenant_id=tenant_id,
                    **{
                        "customer_identifier_field": "customer",
                        "loyalty_identifier_field": "id",
                        "track_audience_data": False,
                        "auto_subscribe": False,
                        **(inbound or {}),
                    },
                )
            )
        for position, mapping in enumerate(inbound_mappings or []):
            session.add(
                InboundMapping(
                    tenant_id=tenant_id,
                    position=position,
                    **{"event_name": None, "priority": 0, "attributes": {}, **mapping},
                )
            )
        for position, field in enumerate(sync_fields or []):
            session.add(SyncField(tenant_id=tenant_id, position=position, **field))
        for position, event in enumerate(external_events or []):
            session.add(ExternalEvent(tenant_id=tenant_id, position=position, **{"attributes": {}, **event}))
        await session.commit()
    return TenantFixture(id=tenant_id, engine_api_key=engine_key, inbound_token=token)
