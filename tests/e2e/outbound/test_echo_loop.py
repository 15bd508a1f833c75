"""The echo-loop guard end to end: an event the bridge delivered to mParticle (the fake S2S server
records it) comes back through the Firehose for a tenant whose inbound mapping would award it;
the worker drops it before mapping, counts it in the daily ECHO_DROPPED summary and records no
ledger row. A control event without the marker, through the same mapping, is awarded."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.e2e.outbound.helpers import make_s2s_tenant, post_ok, status_is, wait_until
from tests.fakes.s2s_server import FakeS2SServer
from tests.inbound_helpers import AdminReader, account, post_firehose, recent_ms

EXTERNAL_EVENTS = [{"loyalty_event": "point_add", "event_name": "antavo_point_add", "custom_event_type": "transaction"}]
# The inbound direction awards exactly what the outbound direction sends.
INBOUND_MAPPINGS = [{"loyalty_event": "point_add", "event_type": "custom_event", "event_name": "antavo_point_add"}]


def firehose_event_of(s2s_event: dict[str, Any]) -> dict[str, Any]:
    """The Firehose custom_event mParticle forwards for an S2S custom_event it received."""
    data = s2s_event["data"]
    return {
        "type": "custom_event",
        "id": data["source_message_id"],
        "timestamp_ms": recent_ms(),
        "name": data["event_name"],
        "custom_event_type": data["custom_event_type"],
        "attributes": data.get("custom_attributes") or {},
        "custom_flags": data["custom_flags"],
    }


def event_processing_request(tenant_fixture: Any, customer_id: str, *events: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "event_processing_request",
        "id": str(uuid.uuid4()),
        "timestamp_ms": recent_ms(),
        "firehose_version": "3.2.0",
        "account": account(tenant_fixture),
        "user_identities": [{"type": "customer", "encoding": "raw", "value": customer_id}],
        "events": list(events),
    }


async def test_an_echoed_event_is_dropped_and_never_awarded(
    app,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    fake_s2s: FakeS2SServer,
    drain_queue,
) -> None:
    tenant = await make_s2s_tenant(
        sessionmaker,
        fake_s2s,
        external_events=EXTERNAL_EVENTS,
        inbound_mappings=INBOUND_MAPPINGS,
        inbound={"auto_subscribe": True},
    )
    await app.state.proxy.tenant_configs.refresh()

    message_id = await post_ok(
        client, tenant, "events", {"customer": {"id": "c-echo"}, "action": "point_add", "data": {"points": 5}}
    )
    await drain_queue()  # a burst worker delivers it
    await wait_until(status_is(sessionmaker, message_id, "delivered"), message="delivery to the fake S2S")
    [delivered] = fake_s2s.accepted(tenant.api_key)
    [s2s_event] = delivered.batch["events"]
    echoed = firehose_event_of(s2s_event)
    assert echoed["custom_flags"] == {"LoyaltyBridge.Origin": "loyalty-bridge"}

    response = await post_firehose(client, event_processing_request(tenant.tenant, "c-echo", echoed))
    assert response.status_code == 200, response.text
    control = {key: value for key, value in echoed.items() if key != "custom_flags"} | {"id": str(uuid.uuid4())}
    response = await post_firehose(client, event_processing_request(tenant.tenant, "c-echo", control))
    assert response.status_code == 200, response.text

    await drain_queue()  # the worker applies the two Firehose requests

    reader = AdminReader(client, admin_headers, tenant.id)
    ledger = await reader.ledger("c-echo")
    assert [entry["source_event_id"] for entry in ledger] == [control["id"]], "the echoed event was not awarded"
    [summary] = (await reader.get("/incoming-errors", error_code="ECHO_DROPPED"))["items"]
    assert summary["source"] == "engine_request"
    assert summary["message"].startswith("1 echoed event(s) dropped today")
