"""Data age (CONTRACT §8): events older than the tenant's max_data_age_hours when received are not
awarded but logged (EVENT_TOO_OLD, one entry per request); and the echo-loop guard's daily
ECHO_DROPPED summary (one entry per tenant and day, whatever the number of echoes)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import make_tenant
from tests.inbound_helpers import (
    AdminReader,
    custom_event,
    event_request,
    logged_errors,
    logged_payload,
    post_firehose,
    recent_ms,
    refresh_configs,
)

REDEEM = {"loyalty_event": "points_redeemed", "event_type": "custom_event", "event_name": "redeem"}
HOURS = 60


@pytest.fixture
def new_tenant(app, sessionmaker):
    async def create(**kwargs: Any):
        tenant = await make_tenant(sessionmaker, **kwargs)
        await refresh_configs(app)
        return tenant

    return create


async def send(client, payload: dict[str, Any]) -> None:
    response = await post_firehose(client, payload)
    assert response.status_code == 200, response.text


async def test_old_events_are_logged_not_awarded(new_tenant, client, drain_queue, admin_headers, sessionmaker) -> None:
    tenant = await new_tenant(inbound={"auto_subscribe": True}, inbound_mappings=[REDEEM])
    fresh = custom_event("redeem", timestamp_ms=recent_ms(23 * HOURS))
    old = [custom_event("redeem", timestamp_ms=recent_ms(25 * HOURS)) for _ in range(2)]
    unmapped_old = custom_event("browse", timestamp_ms=recent_ms(100 * HOURS))
    payload = event_request(tenant, old[0], fresh, old[1], unmapped_old, customer="C-age")
    await send(client, payload)
    await drain_queue()

    ledger = await AdminReader(client, admin_headers, tenant.id).ledger("C-age")
    assert [entry["source_event_id"] for entry in ledger] == [fresh["id"]]
    [entry] = await logged_errors(sessionmaker, tenant.id)
    assert (entry.source, entry.error_code, entry.request_id) == ("engine_request", "EVENT_TOO_OLD", payload["id"])
    assert entry.message.startswith("2 event(s) older than max_data_age_hours (24)")
    assert logged_payload(entry)["id"] == payload["id"]


async def test_a_tenant_may_accept_any_age_or_a_shorter_one(new_tenant, client, drain_queue, admin_headers) -> None:
    any_age = await new_tenant(inbound={"auto_subscribe": True, "max_data_age_hours": -1}, inbound_mappings=[REDEEM])
    one_hour = await new_tenant(inbound={"auto_subscribe": True, "max_data_age_hours": 1}, inbound_mappings=[REDEEM])
    for tenant in (any_age, one_hour):
        ancient = custom_event("redeem", timestamp_ms=1_000_000_000_000)  # 2001
        two_hours = custom_event("redeem", timestamp_ms=recent_ms(2 * HOURS))
        await send(client, event_request(tenant, ancient, two_hours, customer="C-any"))
    await drain_queue()
    assert len(await AdminReader(client, admin_headers, any_age.id).ledger("C-any")) == 2
    assert await AdminReader(client, admin_headers, one_hour.id).customers() == [], "nothing left to award"


async def test_echoes_are_summed_in_one_daily_entry(new_tenant, client, drain_queue, admin_headers) -> None:
    tenant = await new_tenant(inbound={"auto_subscribe": True}, inbound_mappings=[REDEEM])
    other = await new_tenant(inbound={"auto_subscribe": True}, inbound_mappings=[REDEEM])
    echo_flags = {"LoyaltyBridge.Origin": "loyalty-bridge"}
    await send(client, event_request(tenant, *[custom_event("redeem", custom_flags=echo_flags)] * 2, customer="C-e"))
    await drain_queue()
    await send(client, event_request(tenant, custom_event("redeem", custom_flags=echo_flags), customer="C-e"))
    await send(client, event_request(other, custom_event("redeem", custom_flags=echo_flags), customer="C-e"))
    await drain_queue()

    reader = AdminReader(client, admin_headers, tenant.id)
    [summary] = await reader.all_items("/incoming-errors")
    assert (summary["error_code"], summary["source"], summary["request_id"]) == ("ECHO_DROPPED", "engine_request", None)
    assert summary["message"].startswith("3 echoed event(s) dropped today")
    assert summary["created_at"].endswith("T00:00:00Z"), "created at the start of the UTC day"
    assert await reader.customers() == [], "no echo was awarded"
    [other_summary] = await AdminReader(client, admin_headers, other.id).all_items("/incoming-errors")
    assert other_summary["message"].startswith("1 echoed event(s)")
