"""The exact S2S batches each outbound route delivers, through the worker to the fake S2S server."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import Settings
from tests.e2e.outbound.conftest import start_worker
from tests.e2e.outbound.helpers import (
    S2STenant,
    load_attempts,
    load_message,
    make_s2s_tenant,
    post_ok,
    status_is,
    wait_until,
)
from tests.fakes.s2s_server import AcceptedBatch, FakeS2SServer

WITH_WORKER = pytest.mark.usefixtures("running_worker")

UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

SYNC_FIELDS = [
    {"loyalty_field": "first_name", "remote_field": "$FirstName"},
    {"loyalty_field": "last_name", "remote_field": "$lastname"},
    {"loyalty_field": "city", "remote_field": "$City"},
    {"loyalty_field": "score", "remote_field": "antavo_score"},
    {"loyalty_field": "tier", "remote_field": "antavo_tier"},
    {"loyalty_field": "interests", "remote_field": "antavo_interests"},
]
EXTERNAL_EVENTS = [
    {
        "loyalty_event": "point_add",
        "event_name": "antavo_point_add",
        "custom_event_type": "transaction",
        "attributes": {
            "antavo_points": "{points}",
            "antavo_reason": "earned for {reason}",
            "antavo_first_item": "{items.0.sku}",
            "antavo_source": "loyalty",
            "antavo_missing": "{nowhere}",
        },
    },
    {"loyalty_event": "reward_claim", "event_name": "antavo_reward", "custom_event_type": "attribution"},
]


async def deliver(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    fake: FakeS2SServer,
    tenant: S2STenant,
    path: str,
    body: dict[str, Any],
) -> tuple[dict[str, Any], AcceptedBatch]:
    """Post a call, wait for its delivery; (the stored batch, what the fake S2S server accepted)."""
    message_id = await post_ok(client, tenant, path, body)
    await wait_until(status_is(sessionmaker, message_id, "delivered"), message="delivery")
    message = await load_message(sessionmaker, message_id)
    accepted = fake.accepted(tenant.api_key)
    assert len(accepted) == 1
    assert accepted[0].batch == message.batch
    return message.batch, accepted[0]


def source_ids(batch: dict[str, Any]) -> list[str]:
    ids = [batch["source_request_id"]] + [event["data"]["source_message_id"] for event in batch.get("events", [])]
    assert all(UUID_PATTERN.match(value) for value in ids), ids
    return ids


@WITH_WORKER
class TestCustomerUpdates:
    async def test_default_identities_reserved_and_custom_attributes(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s, sync_fields=SYNC_FIELDS)
        customer = {
            "id": "c-100",
            "email": "jane@example.com",
            "first_name": "Jane",
            "last_name": "Doe",
            "score": 120,
            "tier": None,
            "interests": ["books", "music"],
            "unsynced": "not sent",
        }
        batch, accepted = await deliver(
            client, sessionmaker, fake_s2s, tenant, "customer-updates", {"customer": customer}
        )
        assert batch == {
            "environment": "production",
            "source_request_id": batch["source_request_id"],
            "user_identities": {"customer_id": "c-100", "email": "jane@example.com"},
            "user_attributes": {
                "$firstname": "Jane",
                "$lastname": "Doe",
                "antavo_score": 120,
                "antavo_tier": None,
                "antavo_interests": ["books", "music"],
            },
        }
        source_ids(batch)
        assert accepted.path == "/v2/events"
        assert accepted.headers["content-type"] == "application/json"
        credentials = base64.b64encode(f"{tenant.api_key}:{tenant.api_secret}".encode()).decode()
        assert accepted.headers["authorization"] == f"Basic {credentials}"

    async def test_sync_only_configured_identifier_in_development(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer
    ) -> None:
        tenant = await make_s2s_tenant(
            sessionmaker,
            fake_s2s,
            outbound={
                "development": True,
                "sync_only_configured_identifiers": True,
                "loyalty_identifier_field": "card_number",
                "customer_identifier_field": "other_id_2",
            },
            sync_fields=SYNC_FIELDS,
        )
        customer = {"id": "c-101", "email": "joe@example.com", "card_number": "CARD-9", "city": "Szeged"}
        batch, _ = await deliver(client, sessionmaker, fake_s2s, tenant, "customer-updates", {"customer": customer})
        assert batch == {
            "environment": "development",
            "source_request_id": batch["source_request_id"],
            "user_identities": {"other_id_2": "CARD-9"},
            "user_attributes": {"$city": "Szeged"},
        }

    async def test_configured_pair_added_to_the_defaults(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer
    ) -> None:
        tenant = await make_s2s_tenant(
            sessionmaker,
            fake_s2s,
            outbound={"loyalty_identifier_field": "mobile_phone", "customer_identifier_field": "mobile_number"},
        )
        customer = {"id": 7, "email": "ann@example.com", "mobile_phone": "+36301234567"}
        batch, _ = await deliver(client, sessionmaker, fake_s2s, tenant, "customer-updates", {"customer": customer})
        assert batch["user_identities"] == {
            "customer_id": "7",
            "email": "ann@example.com",
            "mobile_number": "+36301234567",
        }
        assert batch["user_attributes"] == {}


@WITH_WORKER
class TestEvents:
    async def test_external_event_templates_over_data(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s, external_events=EXTERNAL_EVENTS)
        body = {
            "customer": {"id": "c-200", "email": "jane@example.com"},
            "action": "point_add",
            "data": {"points": 50, "reason": "birthday", "items": [{"sku": "SKU-1"}]},
            "occurred_at": "2023-11-14T22:13:20Z",
        }
        batch, _ = await deliver(client, sessionmaker, fake_s2s, tenant, "events", body)
        request_id, message_id = source_ids(batch)
        assert batch == {
            "environment": "production",
            "source_request_id": request_id,
            "user_identities": {"customer_id": "c-200", "email": "jane@example.com"},
            "events": [
                {
                    "event_type": "custom_event",
                    "data": {
                        "event_name": "antavo_point_add",
                        "custom_event_type": "transaction",
                        "timestamp_unixtime_ms": 1_700_000_000_000,
                        "source_message_id": message_id,
                        "custom_attributes": {
                            "antavo_points": 50,
                            "antavo_reason": "earned for birthday",
                            "antavo_first_item": "SKU-1",
                            "antavo_source": "loyalty",
                        },
                        # The echo marker: the Firehose side drops this event if mParticle sends it back.
                        "custom_flags": {"LoyaltyBridge.Origin": "loyalty-bridge"},
                    },
                }
            ],
        }

    async def test_epoch_ms_occurred_at_and_attribution_type(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s, external_events=EXTERNAL_EVENTS)
        body = {"customer": {"id": "c-201"}, "action": "reward_claim", "occurred_at": 1_700_000_123_456}
        batch, _ = await deliver(client, sessionmaker, fake_s2s, tenant, "events", body)
        data = batch["events"][0]["data"]
        assert (data["event_name"], data["custom_event_type"], data["timestamp_unixtime_ms"]) == (
            "antavo_reward",
            "attribution",
            1_700_000_123_456,
        )
        assert data["custom_attributes"] == {}

    async def test_without_occurred_at_the_acceptance_time_is_used(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s, external_events=EXTERNAL_EVENTS)
        message_id = await post_ok(client, tenant, "events", {"customer": {"id": "c-202"}, "action": "reward_claim"})
        await wait_until(status_is(sessionmaker, message_id, "delivered"), message="delivery")
        message = await load_message(sessionmaker, message_id)
        stamped_ms = message.batch["events"][0]["data"]["timestamp_unixtime_ms"]
        assert stamped_ms == pytest.approx(message.created_at.timestamp() * 1000, abs=5_000)


@WITH_WORKER
class TestMarketingCommunications:
    async def test_data_becomes_the_custom_attributes(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s, outbound={"development": True})
        body = {
            "customer": {"id": "c-300", "email": "jane@example.com"},
            "event_name": "point_add",
            "event_type": "user_preference",
            "data": {"points": "10", "campaign": "spring", "vip": True, "details": {"channel": "email"}},
        }
        batch, _ = await deliver(client, sessionmaker, fake_s2s, tenant, "marketing-communications", body)
        request_id, message_id = source_ids(batch)
        assert batch == {
            "environment": "development",
            "source_request_id": request_id,
            "user_identities": {"customer_id": "c-300", "email": "jane@example.com"},
            "events": [
                {
                    "event_type": "custom_event",
                    "data": {
                        "event_name": "point_add",
                        "custom_event_type": "user_preference",
                        "timestamp_unixtime_ms": batch["events"][0]["data"]["timestamp_unixtime_ms"],
                        "source_message_id": message_id,
                        "custom_attributes": {
                            "points": "10",
                            "campaign": "spring",
                            "vip": True,
                            "details": '{"channel":"email"}',
                        },
                        "custom_flags": {"LoyaltyBridge.Origin": "loyalty-bridge"},
                    },
                }
            ],
        }


class TestCoalescing:
    """Messages stored while no worker runs; the worker's first run claims them all at once."""

    async def _store_then_deliver(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant: S2STenant,
        count: int,
    ) -> list[uuid.UUID]:
        ids = [await post_ok(client, tenant, "customer-updates", {"customer": {"id": f"c-{n}"}}) for n in range(count)]
        stop = await start_worker(settings)
        try:
            for message_id in ids:
                await wait_until(status_is(sessionmaker, message_id, "delivered", "failed"), message="an outcome")
        finally:
            await stop()
        return ids

    async def test_ready_messages_of_one_tenant_share_a_bulk_request(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
        ids = await self._store_then_deliver(client, settings, sessionmaker, tenant, 5)
        requests = fake_s2s.requests(tenant.api_key)
        assert [(r.path, r.status) for r in requests] == [("/v2/bulkevents", 202)]
        accepted = fake_s2s.accepted(tenant.api_key)
        stored = [(await load_message(sessionmaker, message_id)).batch for message_id in ids]
        assert [a.batch for a in accepted] == stored

    async def test_a_bulk_refused_as_a_whole_is_sent_one_by_one(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
        fake_s2s.fail(400, times=1, api_key=tenant.api_key)
        ids = await self._store_then_deliver(client, settings, sessionmaker, tenant, 3)
        requests = fake_s2s.requests(tenant.api_key)
        assert [(r.path, r.status) for r in requests] == [("/v2/bulkevents", 400)] + [("/v2/events", 202)] * 3
        for message_id in ids:
            message = await load_message(sessionmaker, message_id)
            assert (message.status, message.attempts) == ("delivered", 1)
            assert [a.status_code for a in await load_attempts(sessionmaker, message_id)] == [202]
