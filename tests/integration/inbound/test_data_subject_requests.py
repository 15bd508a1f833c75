"""Data subject requests (CONTRACT §8): an erasure removes the customer's personal data (attributes,
list memberships, ledger data, stored error-log payloads, outbound batches) and is recorded; access
and portability are acknowledged. Results are read through the admin API."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.factories import make_tenant
from tests.inbound_helpers import (
    AdminReader,
    custom_event,
    dsr_request,
    event_request,
    identity,
    membership_request,
    post_firehose,
    recent_ms,
    refresh_configs,
)

OPT_IN = {"loyalty_event": "opt_in", "event_type": "custom_event", "event_name": "sign_up"}
OPT_IN_WITH_NAME = OPT_IN | {"attributes": {"email": "{email}", "first_name": "{first_name}"}}
REDEEM = {"loyalty_event": "points_redeemed", "event_type": "custom_event", "event_name": "redeem"}
EMAIL = "jane.doe@example.com"
EMAIL_SETTINGS = {
    "customer_identifier_field": "email",
    "loyalty_identifier_field": "email",
    "track_audience_data": True,
}


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


def dsr(tenant, request_type: str, **identities: str) -> dict[str, Any]:
    return dsr_request(tenant, request_type, **identities)


async def jane(tenant, client) -> None:
    """Jane signs up (attributes), redeems, joins an audience, and sends an event too old to award."""
    sign_up = custom_event("sign_up", {"email": EMAIL, "first_name": "Jane"})
    await send(client, event_request(tenant, sign_up, identities=[identity("email", EMAIL)]))
    await send(client, event_request(tenant, custom_event("redeem"), identities=[identity("email", EMAIL)]))
    profile = {"user_identities": [identity("email", EMAIL)], "audiences": [{"audience_id": 7, "action": "add"}]}
    await send(client, membership_request(tenant, profile))
    too_old = custom_event("redeem", timestamp_ms=recent_ms(48 * 60))
    await send(client, event_request(tenant, too_old, identities=[identity("email", EMAIL)]))


async def test_erasure_removes_personal_data_and_is_recorded(new_tenant, client, drain_queue, admin_headers) -> None:
    tenant = await new_tenant(inbound=EMAIL_SETTINGS, inbound_mappings=[OPT_IN_WITH_NAME, REDEEM])
    bystander = await new_tenant(inbound=EMAIL_SETTINGS, inbound_mappings=[OPT_IN_WITH_NAME, REDEEM])
    for each in (tenant, bystander):
        await jane(each, client)
    await drain_queue()
    reader = AdminReader(client, admin_headers, tenant.id)
    [customer] = await reader.customers()
    assert customer["attributes"] == {"email": EMAIL, "first_name": "Jane"}
    update = await client.post(
        f"/api/v1/tenants/{tenant.id}/outbound/customer-updates",
        headers={"Authorization": f"Bearer {tenant.engine_api_key}"},
        json={"customer": {"id": customer["id"], "email": EMAIL, "first_name": "Jane"}},
    )
    assert update.status_code == 202, update.text
    [logged] = await reader.all_items("/incoming-errors")
    assert logged["error_code"] == "EVENT_TOO_OLD"

    request = dsr(tenant, "erasure", email=EMAIL, android_advertising_id="84aae47d")
    response = await post_firehose(client, request)
    assert (response.status_code, response.json()["type"]) == (200, "dsr_processing_response")
    await drain_queue()

    erased = await reader.customer(customer["id"])
    assert erased["attributes"] == {}
    [customer_list] = await reader.lists()
    assert await reader.members(customer_list["id"]) == []
    ledger = await reader.ledger(customer["id"])
    assert [(entry["action"], entry["data"]) for entry in ledger] == [("opt_in", {}), ("points_redeemed", {})]
    assert all(entry["request_id"] and entry["occurred_at"] for entry in ledger), "ids and times stay"
    assert (await reader.get(f"/incoming-errors/{logged['id']}"))["payload"] is None
    [message] = (await reader.get("/outbound/messages"))["items"]
    stored = await reader.get(f"/outbound/messages/{message['id']}")
    assert EMAIL not in str(stored["batch"])
    assert stored["status"] == "cancelled"

    [record] = await reader.all_items("/erasures")
    assert record | {"id": 0, "recorded_at": ""} == {
        "id": 0,
        "request_id": request["id"],
        "subject_request_id": request["subject_request_id"],
        "request_type": "erasure",
        "regulation": "gdpr",
        "requested_by": "mparticle",
        "outcome": "erased",
        "customer_id": customer["id"],
        "removed": {
            "attributes": 2,
            "list_memberships": 1,
            "ledger_entries_anonymised": 1,  # the opt_in's data; the redeem had none
            "error_log_payloads": 1,
            "outbound_batches": 1,
        },
        "recorded_at": "",
    }
    assert EMAIL not in str(await reader.all_items("/erasures")), "the record keeps no personal data"

    other = AdminReader(client, admin_headers, bystander.id)
    [untouched] = await other.customers()
    assert untouched["attributes"] == {"email": EMAIL, "first_name": "Jane"}, "another tenant's customer is not erased"
    assert await other.all_items("/erasures") == []


async def test_access_portability_and_unknown_subjects_are_acknowledged(
    new_tenant, client, drain_queue, admin_headers
) -> None:
    tenant = await new_tenant(inbound=EMAIL_SETTINGS, inbound_mappings=[OPT_IN_WITH_NAME])
    await send(
        client, event_request(tenant, custom_event("sign_up", {"email": EMAIL}), identities=[identity("email", EMAIL)])
    )
    requests = [
        dsr(tenant, "access", email=EMAIL),
        dsr(tenant, "portability", email=EMAIL),
        dsr(tenant, "erasure", email="nobody@example.com"),
        dsr(tenant, "erasure", ios_advertising_id="abc"),
    ]
    for request in requests:
        await send(client, request)
    await drain_queue()
    reader = AdminReader(client, admin_headers, tenant.id)
    records = await reader.all_items("/erasures", limit=2)
    assert [(r["request_id"], r["request_type"], r["outcome"]) for r in records] == [
        (requests[3]["id"], "erasure", "no_identity"),
        (requests[2]["id"], "erasure", "no_customer"),
        (requests[1]["id"], "portability", "acknowledged"),
        (requests[0]["id"], "access", "acknowledged"),
    ], "newest first, every page followed"
    [customer] = await reader.customers()
    assert customer["attributes"] == {"email": EMAIL}, "nothing was erased"


async def test_controller_customer_id_finds_the_customer_by_id(new_tenant, client, drain_queue, admin_headers) -> None:
    tenant = await new_tenant(inbound={"auto_subscribe": True}, inbound_mappings=[OPT_IN_WITH_NAME])
    await send(client, event_request(tenant, custom_event("sign_up", {"email": EMAIL}), customer="C-77"))
    await send(client, dsr(tenant, "erasure", controller_customer_id="C-77"))
    await drain_queue()
    reader = AdminReader(client, admin_headers, tenant.id)
    assert (await reader.customer("C-77"))["attributes"] == {}
    [record] = await reader.all_items("/erasures")
    assert (record["outcome"], record["customer_id"]) == ("erased", "C-77")


async def test_erasures_of_an_unknown_tenant_are_404(client, admin_headers) -> None:
    response = await client.get("/api/v1/tenants/t-nobody/erasures", headers=admin_headers)
    assert response.status_code == 404


async def test_the_ledger_stays_write_once_but_for_clearing_data(new_tenant, client, drain_queue, sessionmaker) -> None:
    tenant = await new_tenant(inbound={"auto_subscribe": True}, inbound_mappings=[OPT_IN_WITH_NAME])
    await send(client, event_request(tenant, custom_event("sign_up", {"email": EMAIL}), customer="C-wo"))
    await drain_queue()
    tampering = [
        "UPDATE ledger_event SET action = 'points_added' WHERE tenant_id = :t",
        'UPDATE ledger_event SET data = \'{"email": "x"}\' WHERE tenant_id = :t',
        "UPDATE ledger_event SET data = '{}', occurred_at = now() WHERE tenant_id = :t",
    ]
    for statement in tampering:
        async with sessionmaker() as session:
            with pytest.raises(DBAPIError, match="write-once"):
                await session.execute(text(statement), {"t": tenant.id})
    async with sessionmaker() as session:
        cleared = await session.execute(
            text("UPDATE ledger_event SET data = '{}' WHERE tenant_id = :t"), {"t": tenant.id}
        )
        assert cleared.rowcount == 1
