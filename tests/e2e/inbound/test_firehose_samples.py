"""mParticle's own samples, over real HTTP, through `loyalty-bridge proxy` and `loyalty-bridge
worker` processes on real PostgreSQL and Redis; the records are read back through the admin API."""

from __future__ import annotations

import signal
from collections import defaultdict
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.e2e.conftest import eventually, own_database_sessionmaker, own_database_settings
from tests.factories import make_tenant
from tests.inbound_helpers import FIREHOSE_PATH, AdminReader, event_request, logged_errors, sample

SAMPLE_REQUESTS = [
    "EventProcessingRequest_android.json",
    "EventProcessingRequest_ios.json",
    "AudienceSubscriptionRequest.json",
    "AudienceMembershipChangeRequest.json",
    "DsrProcessingRequest.json",
]


@pytest.fixture
def settings(settings: Settings, own_database_url: str) -> Settings:
    """A database of each test alone (tests/e2e/conftest.py): the worker's sweeps would otherwise
    also take up what earlier tests left in the shared one, and its stop could outlast its bound."""
    return own_database_settings(settings, own_database_url)


@pytest.fixture
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with own_database_sessionmaker(settings) as sessions:
        yield sessions


async def test_samples_become_loyalty_records(live_proxy, spawn, sessionmaker) -> None:
    tenant = await make_tenant(
        sessionmaker,
        inbound={"customer_identifier_field": "mpid", "auto_subscribe": True, "track_audience_data": True},
        inbound_mappings=[
            {
                "loyalty_event": "app_interaction",
                "event_type": "custom_event",
                "event_name": "customEvent",
                "priority": 5,
                "attributes": {
                    "value": "{event_attribute}",
                    "app": "{batch.runtime_environment.application_name}",
                    "city": "{batch.user_attributes.$City}",
                },
            },
            {
                "loyalty_event": "cart_add",
                "event_type": "product_action",
                "event_name": "add_to_cart",
                "priority": 1,
                "attributes": {
                    "sku": "{event.products.0.id}",
                    "total": "{total_amount}",
                    "label": "{currency_code} cart",
                },
            },
        ],
    )
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=live_proxy.base_url, timeout=10) as http:
        # The proxy picks the new tenant up within CONFIG_CACHE_SECONDS; a verification call shows when.
        async def verified() -> bool:
            return (await http.post(FIREHOSE_PATH, json=event_request(tenant))).status_code == 200

        await eventually(verified, timeout=10)

        registration = await http.post(FIREHOSE_PATH, json=sample("ModuleRegistrationRequest.json"))
        assert registration.status_code == 200
        assert registration.json()["type"] == "module_registration_response"

        sent = {name: sample(name, tenant) for name in SAMPLE_REQUESTS}
        for name, payload in sent.items():
            response = await http.post(FIREHOSE_PATH, json=payload)
            assert response.status_code == 200, (name, response.text)
            assert response.json()["id"] == payload["id"]

        worker = spawn("worker")
        reader = AdminReader(http, admin, tenant.id)

        async def everything_applied() -> bool:
            customers = await reader.customers()
            lists = await reader.lists()
            return len(lists) == 2 and len(customers) == 1 and len(await reader.ledger("12345")) == 4

        await eventually(everything_applied, timeout=30)

        customer = await reader.customer("12345")
        assert (customer["status"], customer["attributes"]) == ("inactive", {})

        ledger_by_request: dict[str, list[tuple[str, dict[str, object]]]] = defaultdict(list)
        for entry in await reader.ledger("12345"):
            assert entry["source"] == "mparticle"
            ledger_by_request[entry["request_id"]].append((entry["action"], entry["data"]))
        android, ios = sent["EventProcessingRequest_android.json"], sent["EventProcessingRequest_ios.json"]
        cart = {"sku": "id", "total": 11, "label": "USD cart"}
        interaction = {"value": "value", "app": "App Name", "city": "Boca Raton"}
        # Within each request: the priority 1 mapping first, although its event came second.
        assert ledger_by_request == {
            android["id"]: [("cart_add", cart), ("app_interaction", interaction)],
            ios["id"]: [("cart_add", cart), ("app_interaction", interaction)],
        }

        lists = {lst["audience_id"]: lst for lst in await reader.lists()}
        assert (lists[1234]["name"], lists[1234]["member_count"]) == ("New Users Low Engagement", 0)
        assert (lists[456]["name"], lists[456]["member_count"]) == ("Example Audience Name", 1)
        assert await reader.members(lists[456]["id"]) == ["12345"]
        assert await logged_errors(sessionmaker, tenant.id) == []

    worker.signal(signal.SIGTERM)
    assert await worker.wait(30) == 0, worker.output()
