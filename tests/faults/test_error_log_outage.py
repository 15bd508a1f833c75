"""An incoming-error-log write that PostgreSQL refuses during an outage is written once it is back."""

from __future__ import annotations

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from proxy.app import create_app
from shared.models import IncomingError
from shared.settings import Settings
from tests.e2e.conftest import eventually
from tests.e2e.outbound.helpers import S2STenant
from tests.inbound_helpers import custom_event, event_request, post_firehose, refresh_configs
from tests.private_postgres import PrivatePostgres


async def test_a_rejection_logged_during_an_outage_is_written_afterwards(
    fault_settings: Settings,
    fault_tenant: S2STenant,
    fault_postgres: PrivatePostgres,
    fault_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    app = create_app(fault_settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client,
    ):
        await refresh_configs(app)
        payload = event_request(fault_tenant.tenant, custom_event("tick"), customer="C-1")
        payload["account"]["account_settings"]["authenticationToken"] = "not-the-token"
        fault_postgres.stop()
        try:
            # The tenant is known from the config cache (memory): the answer needs no database.
            refused = await post_firehose(client, payload)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "INVALID_TOKEN"
            assert app.state.proxy.deferred_error_log.waiting == 1, "kept, not dropped"
        finally:
            await fault_postgres.start()

        async def logged() -> list[tuple[str, str | None]]:
            async with fault_sessionmaker() as session:
                rows = await session.scalars(select(IncomingError).where(IncomingError.tenant_id == fault_tenant.id))
                return [(row.error_code, row.request_id) for row in rows]

        await eventually(logged, timeout=30)
    assert await logged() == [("INVALID_TOKEN", payload["id"])]
