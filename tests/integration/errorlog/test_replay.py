"""Replay from the incoming error log (CONTRACT §8): a logged request is applied again with the
current configuration, through the queue and a real worker; results read through the admin API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from proxy.app import create_app
from shared.errorlog.writer import record_incoming_error
from shared.errors import ErrorCode, ErrorSource
from tests.factories import make_tenant
from tests.inbound_helpers import (
    AdminReader,
    account,
    custom_event,
    event_request,
    logged_errors,
    post_firehose,
    refresh_configs,
)

REDEEM = {"loyalty_event": "points_redeemed", "event_type": "custom_event", "event_name": "redeem"}


@pytest.fixture
def new_tenant(app, sessionmaker):
    async def create(**kwargs: Any):
        tenant = await make_tenant(sessionmaker, **kwargs)
        await refresh_configs(app)
        return tenant

    return create


class Operator:
    """The admin API calls of these tests, for one tenant."""

    def __init__(self, client, headers: dict[str, str], tenant_id: str) -> None:
        self.client = client
        self.headers = headers
        self.base = f"/api/v1/tenants/{tenant_id}"
        self.reader = AdminReader(client, headers, tenant_id)

    async def errors(self, **filters: Any) -> list[dict[str, Any]]:
        return await self.reader.all_items("/incoming-errors", sort="id", **filters)

    async def entry(self, entry_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.reader.get(f"/incoming-errors/{entry_id}")
        return result

    async def replay(self, entry_id: int | str):
        return await self.client.post(f"{self.base}/incoming-errors/{entry_id}/replay", headers=self.headers)

    async def replay_matching(self, **params: Any):
        return await self.client.post(f"{self.base}/incoming-errors/replay", headers=self.headers, params=params)

    async def turn_on_auto_subscribe(self) -> None:
        response = await self.client.put(
            f"{self.base}/inbound-settings", headers=self.headers, json={"auto_subscribe": True}
        )
        assert response.status_code == 200, response.text


@pytest.fixture
def operator_for(client, admin_headers):
    return lambda tenant: Operator(client, admin_headers, tenant.id)


async def send(client, payload: dict[str, Any]) -> None:
    response = await post_firehose(client, payload)
    assert response.status_code == 200, response.text


async def test_fixed_mapping_then_replay_one_awards_the_event(new_tenant, client, drain_queue, operator_for) -> None:
    tenant = await new_tenant(inbound_mappings=[REDEEM])
    operator = operator_for(tenant)
    payload = event_request(tenant, custom_event("redeem"), customer="C-late")
    await send(client, payload)
    await drain_queue()
    [entry] = await operator.errors()
    assert (entry["error_code"], entry["replayed_at"], entry["replay_outcome"]) == ("CUSTOMER_NOT_FOUND", None, None)

    await operator.turn_on_auto_subscribe()
    response = await operator.replay(entry["id"])
    assert response.status_code == 202, response.text
    assert response.json() == {"count": 1}
    await drain_queue()

    [event] = await operator.reader.ledger("C-late")
    assert (event["action"], event["request_id"]) == ("points_redeemed", payload["id"])
    replayed = await operator.entry(entry["id"])
    assert replayed["replayed_at"] is not None
    assert replayed["replay_outcome"] == "applied: 1 ledger event(s) recorded"
    assert [e["id"] for e in await operator.errors()] == [entry["id"]], "a replay logs no new entries"


async def test_replaying_twice_records_nothing_twice(new_tenant, client, drain_queue, operator_for) -> None:
    tenant = await new_tenant(inbound_mappings=[REDEEM])
    operator = operator_for(tenant)
    await send(client, event_request(tenant, custom_event("redeem"), custom_event("redeem"), customer="C-2x"))
    await drain_queue()
    [entry] = await operator.errors()
    await operator.turn_on_auto_subscribe()

    assert (await operator.replay(entry["id"])).status_code == 202
    await drain_queue()
    assert (await operator.replay(entry["id"])).status_code == 202
    await drain_queue()

    assert len(await operator.reader.ledger("C-2x")) == 2, "two events, each recorded once"
    assert (await operator.entry(entry["id"]))["replay_outcome"] == "applied: 0 ledger event(s) recorded"


async def test_replay_with_the_configuration_still_wrong_reports_the_failure(
    new_tenant, client, drain_queue, operator_for
) -> None:
    tenant = await new_tenant(inbound_mappings=[REDEEM])
    operator = operator_for(tenant)
    await send(client, event_request(tenant, custom_event("redeem"), customer="C-still"))
    await drain_queue()
    [entry] = await operator.errors()
    assert (await operator.replay(entry["id"])).status_code == 202
    await drain_queue()
    assert (await operator.entry(entry["id"]))["replay_outcome"] == "failed: CUSTOMER_NOT_FOUND"
    assert len(await operator.errors()) == 1
    assert await operator.reader.customers() == []


async def test_replay_by_filter_and_its_dry_run(new_tenant, client, drain_queue, operator_for) -> None:
    tenant = await new_tenant(inbound_mappings=[REDEEM])
    operator = operator_for(tenant)
    for customer in ("C-a", "C-b"):
        await send(client, event_request(tenant, custom_event("redeem"), customer=customer))
    bad_token = event_request(tenant, custom_event("redeem"), customer="C-c")
    bad_token["account"] = account(tenant, token="wrong")
    assert (await post_firehose(client, bad_token)).status_code == 401
    await drain_queue()
    assert sorted(e["error_code"] for e in await operator.errors()) == [
        "CUSTOMER_NOT_FOUND",
        "CUSTOMER_NOT_FOUND",
        "INVALID_TOKEN",
    ]
    await operator.turn_on_auto_subscribe()

    dry = await operator.replay_matching(error_code="customer_not_found", dry_run="true")
    assert (dry.status_code, dry.json()) == (200, {"count": 2})
    everything = await operator.replay_matching(dry_run="true")
    assert everything.json() == {"count": 2}, "entries rejected by the proxy are never replayed"
    await drain_queue()
    assert await operator.reader.customers() == [], "a dry run replays nothing"

    replayed = await operator.replay_matching(error_code="CUSTOMER_NOT_FOUND")
    assert (replayed.status_code, replayed.json()) == (202, {"count": 2})
    await drain_queue()
    assert sorted(c["id"] for c in await operator.reader.customers()) == ["C-a", "C-b"]
    outcomes = {e["error_code"]: e["replay_outcome"] for e in await operator.errors()}
    assert outcomes == {"CUSTOMER_NOT_FOUND": "applied: 1 ledger event(s) recorded", "INVALID_TOKEN": None}


async def test_replays_that_cannot_be(new_tenant, client, drain_queue, operator_for, sessionmaker) -> None:
    tenant = await new_tenant(inbound_mappings=[REDEEM])
    other = await new_tenant(inbound_mappings=[REDEEM])
    operator = operator_for(tenant)
    bad_token = event_request(tenant, custom_event("redeem"))
    bad_token["account"] = account(tenant, token="wrong")
    assert (await post_firehose(client, bad_token)).status_code == 401
    async with sessionmaker() as session:
        await record_incoming_error(
            session,
            tenant_id=tenant.id,
            source=ErrorSource.ENGINE_PROCESSING,
            error_code=ErrorCode.PROCESSING_FAILED,
            message="payload not kept",
            created_at=datetime.now(UTC),
        )
        await session.commit()
    rejected, no_payload = await operator.errors()

    refused = await operator.replay(rejected["id"])
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "NOT_REPLAYABLE")
    empty = await operator.replay(no_payload["id"])
    assert (empty.status_code, empty.json()["error"]["code"]) == (409, "NO_PAYLOAD")
    assert (await operator_for(other).replay(rejected["id"])).status_code == 404, "another tenant's entry"
    assert (await operator.replay("not-an-id")).status_code == 404
    assert (await operator_for(other).replay_matching()).json() == {"count": 0}
    await drain_queue()
    assert [e["replay_outcome"] for e in await logged_errors_of(operator)] == [None, None]


async def logged_errors_of(operator: Operator) -> list[dict[str, Any]]:
    return [await operator.entry(e["id"]) for e in await operator.errors()]


async def test_replay_needs_the_admin_key(new_tenant, client) -> None:
    tenant = await new_tenant()
    response = await client.post(f"/api/v1/tenants/{tenant.id}/incoming-errors/replay")
    assert response.status_code == 401


async def test_replayed_payload_never_held_the_token(
    new_tenant, client, drain_queue, operator_for, sessionmaker
) -> None:
    tenant = await new_tenant(inbound_mappings=[REDEEM])
    operator = operator_for(tenant)
    await send(client, event_request(tenant, custom_event("redeem"), customer="C-tok"))
    await drain_queue()
    [entry] = await logged_errors(sessionmaker, tenant.id)
    assert entry.payload["account"]["account_settings"]["authenticationToken"] == "[REDACTED]"
    await operator.turn_on_auto_subscribe()
    assert (await operator.replay(entry.id)).status_code == 202
    await drain_queue()
    assert len(await operator.reader.ledger("C-tok")) == 1, "applied without the token"


async def test_replay_while_the_queue_is_down_is_503(settings, sessionmaker, admin_headers) -> None:
    tenant = await make_tenant(sessionmaker)
    async with sessionmaker() as session:
        await record_incoming_error(
            session,
            tenant_id=tenant.id,
            source=ErrorSource.ENGINE_REQUEST,
            error_code=ErrorCode.CUSTOMER_NOT_FOUND,
            message="no customer",
            created_at=datetime.now(UTC),
            request_id="r-down",
            payload=event_request(tenant, custom_event("redeem"), request_id="r-down"),
        )
        await session.commit()
    app = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client,
    ):
        operator = Operator(client, admin_headers, tenant.id)
        [entry] = await operator.errors()
        one = await operator.replay(entry["id"])
        matching = await operator.replay_matching()
    for response in (one, matching):
        assert (response.status_code, response.json()["error"]["code"]) == (503, "QUEUE_UNAVAILABLE")
