"""Per-tenant rate limit of the outbound API: 429 RATE_LIMITED with Retry-After for the tenant over
its budget, while other tenants and the Firehose go on (proxy/rate_limit.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from shared.settings import Settings
from tests.factories import make_tenant
from tests.inbound_helpers import FIREHOSE_PATH, sample


@pytest.fixture
async def limited_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A proxy whose tenants may make 3 outbound calls at once, then one every 100 s."""
    from proxy.app import create_app

    app = create_app(
        settings.model_copy(update={"outbound_rate_limit_per_second": 0.01, "outbound_rate_limit_burst": 3})
    )
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client,
    ):
        yield client


async def test_a_tenant_over_its_budget_gets_429_and_the_others_do_not(limited_client, sessionmaker) -> None:
    busy, quiet = await make_tenant(sessionmaker), await make_tenant(sessionmaker)

    async def update(tenant, customer_id: str) -> httpx.Response:
        return await limited_client.post(
            f"/api/v1/tenants/{tenant.id}/outbound/customer-updates",
            json={"customer": {"id": customer_id}},
            headers={"Authorization": f"Bearer {tenant.engine_api_key}"},
        )

    busy_statuses = [(await update(busy, f"c-{n}")).status_code for n in range(3)]
    refused = await update(busy, "c-4")
    quiet_response = await update(quiet, "c-1")
    firehose = [
        await limited_client.post(FIREHOSE_PATH, content=json.dumps(sample("ModuleRegistrationRequest.json")))
        for _ in range(5)
    ]

    assert busy_statuses == [202, 202, 202]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["Retry-After"]) <= 100
    assert quiet_response.status_code == 202
    assert [response.status_code for response in firehose] == [200] * 5


async def test_a_refused_key_does_not_spend_the_tenants_budget(limited_client, sessionmaker) -> None:
    tenant = await make_tenant(sessionmaker)
    url = f"/api/v1/tenants/{tenant.id}/outbound/customer-updates"
    for _ in range(5):
        wrong = await limited_client.post(
            url, json={"customer": {"id": "c"}}, headers={"Authorization": "Bearer lbk_not-a-key"}
        )
        assert wrong.status_code == 401

    right = await limited_client.post(
        url, json={"customer": {"id": "c"}}, headers={"Authorization": f"Bearer {tenant.engine_api_key}"}
    )
    assert right.status_code == 202
