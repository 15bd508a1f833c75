"""Inbound processing, one scenario per rule: requests go through the proxy (in-process), a burst
worker applies them against real Redis and PostgreSQL, results are read through the admin API."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import delete, func, select, text

from shared.inbound.customers import CustomerBatchRepository
from shared.mapping.inbound import CUSTOMER_ID_NAMESPACE, NewCustomer
from shared.models import LedgerEvent, OutboundSettings, ProcessedRequest
from shared.queues.firehose import FirehoseQueue
from tests.factories import make_tenant
from tests.inbound_helpers import (
    AdminReader,
    custom_event,
    event_request,
    identity,
    logged_errors,
    logged_payload,
    membership_request,
    post_firehose,
    profile,
    recent_ms,
    refresh_configs,
    subscription_request,
)

PURCHASE_EVENT = {
    "type": "product_action",
    "timestamp_ms": recent_ms(),
    "action": "purchase",
    "transaction_id": "T-1",
    "total_amount": 11,
    "currency_code": "USD",
    "products": [{"id": "sku1", "name": "Mug", "price": 10, "quantity": 1}],
    "attributes": {"channel": "app"},
}


@pytest.fixture
def new_tenant(app, sessionmaker):
    async def create(**kwargs: Any):
        tenant = await make_tenant(sessionmaker, **kwargs)
        await refresh_configs(app)
        return tenant

    return create


@pytest.fixture
def send(client):
    async def post(payload: dict[str, Any]) -> None:
        response = await post_firehose(client, payload)
        assert response.status_code == 200, response.text

    return post


def reader_for(client, admin_headers, tenant) -> AdminReader:
    return AdminReader(client, admin_headers, tenant.id)


async def errors_of(sessionmaker, tenant) -> list[tuple[str, str]]:
    return [(entry.source, entry.error_code) for entry in await logged_errors(sessionmaker, tenant.id)]


REDEEM = {"loyalty_event": "points_redeemed", "event_type": "custom_event", "event_name": "redeem"}
OPT_IN = {"loyalty_event": "opt_in", "event_type": "custom_event", "event_name": "sign_up"}
PROFILE = {"loyalty_event": "profile", "event_type": "custom_event", "event_name": "profile_update"}


async def test_unknown_customer_without_auto_subscribe_is_logged_and_skipped(
    new_tenant, send, drain_queue, client, admin_headers, sessionmaker
) -> None:
    tenant = await new_tenant(inbound_mappings=[REDEEM])
    payload = event_request(tenant, custom_event("redeem"), customer="C-404")
    await send(payload)
    await drain_queue()
    reader = reader_for(client, admin_headers, tenant)
    assert await reader.customers() == []
    entries = await logged_errors(sessionmaker, tenant.id)
    assert [(e.source, e.error_code, e.request_id) for e in entries] == [
        ("engine_request", "CUSTOMER_NOT_FOUND", payload["id"])
    ]
    assert "C-404" in entries[0].message
    assert logged_payload(entries[0])["events"] == payload["events"]
    assert logged_payload(entries[0])["account"]["account_settings"]["authenticationToken"] == "[REDACTED]"


async def test_auto_subscribe_creates_an_inactive_customer(
    new_tenant, send, drain_queue, client, admin_headers
) -> None:
    tenant = await new_tenant(inbound={"auto_subscribe": True}, inbound_mappings=[REDEEM])
    await send(event_request(tenant, custom_event("redeem", {"points": "5"}), customer="C-new"))
    await drain_queue()
    reader = reader_for(client, admin_headers, tenant)
    customers = await reader.customers()
    assert [(c["id"], c["status"], c["attributes"]) for c in customers] == [("C-new", "inactive", {})]
    assert [event["action"] for event in await reader.ledger("C-new")] == ["points_redeemed"]


async def test_opt_in_creates_an_active_customer_with_its_attributes(
    new_tenant, send, drain_queue, client, admin_headers, sessionmaker
) -> None:
    opt_in = OPT_IN | {"attributes": {"first_name": "{first_name}", "channel": "mparticle"}}
    tenant = await new_tenant(inbound_mappings=[opt_in])  # auto_subscribe off: the opt_in alone creates
    await send(event_request(tenant, custom_event("sign_up", {"first_name": "Jane"}), customer="C-7"))
    await drain_queue()
    reader = reader_for(client, admin_headers, tenant)
    customer = await reader.customer("C-7")
    assert (customer["status"], customer["attributes"]) == ("active", {"first_name": "Jane", "channel": "mparticle"})
    assert [(e["action"], e["data"]) for e in await reader.ledger("C-7")] == [
        ("opt_in", {"first_name": "Jane", "channel": "mparticle"})
    ]
    assert await errors_of(sessionmaker, tenant) == []


async def test_opt_in_activates_an_inactive_customer_and_profile_merges(
    new_tenant, send, drain_queue, client, admin_headers
) -> None:
    tenant = await new_tenant(
        inbound={"auto_subscribe": True},
        inbound_mappings=[
            REDEEM,
            OPT_IN | {"attributes": {"tier": "{tier}", "opted": True}},
            PROFILE | {"attributes": {"tier": "{tier}", "city": "{batch.user_attributes.$City}"}},
        ],
    )
    reader = reader_for(client, admin_headers, tenant)
    await send(event_request(tenant, custom_event("redeem"), customer="C-9"))
    await drain_queue()
    assert (await reader.customer("C-9"))["status"] == "inactive"

    await send(
        event_request(
            tenant,
            custom_event("profile_update", {"tier": "silver"}),
            customer="C-9",
            user_attributes={"$City": "Rome"},
        )
    )
    await drain_queue()
    customer = await reader.customer("C-9")
    assert (customer["status"], customer["attributes"]) == ("inactive", {"tier": "silver", "city": "Rome"})

    await send(event_request(tenant, custom_event("sign_up", {"tier": "gold"}), customer="C-9"))
    await drain_queue()
    customer = await reader.customer("C-9")
    assert customer["status"] == "active"
    assert customer["attributes"] == {"tier": "gold", "city": "Rome", "opted": True}
    assert [e["action"] for e in await reader.ledger("C-9")] == ["points_redeemed", "profile", "opt_in"]


async def test_mappings_of_several_priorities_apply_in_order(
    new_tenant, send, drain_queue, client, admin_headers
) -> None:
    tenant = await new_tenant(
        inbound={"auto_subscribe": True},
        inbound_mappings=[
            {"loyalty_event": "visit", "event_type": "screen_view", "priority": 30},
            {"loyalty_event": "purchase", "event_type": "product_action", "event_name": "purchase", "priority": 10},
            {"loyalty_event": "purchase_bonus", "event_type": "product_action", "priority": 30},
            {"loyalty_event": "redeem", "event_type": "custom_event", "event_name": "redeem", "priority": 20},
        ],
    )
    screen = {"type": "screen_view", "id": "s1", "timestamp_ms": recent_ms(), "screen_name": "Home"}
    events = [screen, custom_event("redeem"), PURCHASE_EVENT | {"id": "p1"}]
    await send(event_request(tenant, *events, customer="C-order"))
    await drain_queue()
    ledger = await reader_for(client, admin_headers, tenant).ledger("C-order")
    # ascending priority; ties (30) in event order: the screen view came before the purchase
    assert [(e["action"], e["source_event_id"]) for e in ledger] == [
        ("purchase", "p1"),
        ("redeem", events[1]["id"]),
        ("visit", "s1"),
        ("purchase_bonus", "p1"),
    ]


async def test_templates_render_typed_interpolated_literal_dotted_and_missing(
    new_tenant, send, drain_queue, client, admin_headers
) -> None:
    templates = {
        "amount": "{total_amount}",
        "channel": "{channel}",
        "label": "order {transaction_id} in {event.currency_code}",
        "source": "mparticle",
        "weight": 2,
        "first_sku": "{event.products.0.id}",
        "first_price": "{event.products.0.price}",
        "tier": "{batch.user_attributes.tier}",
        "coupon": "{coupon_code}",
        "coupon_text": "coupon {coupon_code}",
    }
    # An event from 2024: awarded because this tenant accepts data of any age.
    tenant = await new_tenant(
        inbound={"auto_subscribe": True, "max_data_age_hours": -1},
        inbound_mappings=[{"loyalty_event": "purchase", "event_type": "product_action", "attributes": templates}],
    )
    purchase = PURCHASE_EVENT | {"id": "p-templ", "timestamp_ms": 1714000000000}
    await send(event_request(tenant, purchase, customer="C-t", user_attributes={"tier": "gold"}))
    await drain_queue()
    [event] = await reader_for(client, admin_headers, tenant).ledger("C-t")
    assert event["data"] == {
        "amount": 11,
        "channel": "app",
        "label": "order T-1 in USD",
        "source": "mparticle",
        "weight": 2,
        "first_sku": "sku1",
        "first_price": 10,
        "tier": "gold",
    }
    assert event["source"] == "mparticle"
    assert event["source_event_id"] == "p-templ"
    assert event["occurred_at"] == "2024-04-24T23:06:40Z"


async def test_missing_identifier_is_logged(new_tenant, send, drain_queue, sessionmaker, client, admin_headers) -> None:
    tenant = await new_tenant(inbound={"auto_subscribe": True}, inbound_mappings=[REDEEM])
    await send(event_request(tenant, custom_event("redeem"), identities=[identity("email", "a@example.com")]))
    await send(event_request(tenant, custom_event("redeem"), identities=[identity("customer", "abc", "md5")]))
    await drain_queue()
    entries = await logged_errors(sessionmaker, tenant.id)
    assert sorted((e.source, e.error_code) for e in entries) == [("engine_request", "MISSING_IDENTIFIER")] * 2
    assert any("hashed" in e.message for e in entries)
    assert await reader_for(client, admin_headers, tenant).customers() == []


async def test_identifier_attribute_finds_and_creates_customers(
    new_tenant, send, drain_queue, client, admin_headers, sessionmaker
) -> None:
    tenant = await new_tenant(
        inbound={"customer_identifier_field": "email", "loyalty_identifier_field": "email", "auto_subscribe": True},
        inbound_mappings=[REDEEM],
    )
    async with sessionmaker() as session:
        await CustomerBatchRepository(session).create_if_absent(
            [NewCustomer(tenant.id, "M-1", "active", {"email": "known@example.com"})]
        )
        await session.commit()
    for email in ("known@example.com", "new@example.com"):
        await send(event_request(tenant, custom_event("redeem"), identities=[identity("email", email)]))
    await drain_queue()
    reader = reader_for(client, admin_headers, tenant)
    assert len(await reader.ledger("M-1")) == 1
    [created] = await reader.customers(attribute="email", value="new@example.com")
    assert created["id"] == str(uuid.uuid5(CUSTOMER_ID_NAMESPACE, f"{tenant.id}/email/new@example.com"))
    assert (created["status"], created["attributes"]) == ("inactive", {"email": "new@example.com"})
    assert len(await reader.ledger(created["id"])) == 1


async def test_concurrent_requests_for_one_new_customer_converge(
    new_tenant, send, drain_queue, client, admin_headers
) -> None:
    tenant = await new_tenant(
        inbound={"customer_identifier_field": "email", "loyalty_identifier_field": "email", "auto_subscribe": True},
        inbound_mappings=[REDEEM],
    )
    for _ in range(12):
        await send(event_request(tenant, custom_event("redeem"), identities=[identity("email", "same@example.com")]))
    await drain_queue()  # applied together, in one batch
    reader = reader_for(client, admin_headers, tenant)
    [customer] = await reader.customers()
    assert len(await reader.ledger(customer["id"])) == 12


async def test_duplicate_request_id_is_processed_once(
    new_tenant, send, drain_queue, client, admin_headers, sessionmaker
) -> None:
    tenant = await new_tenant(inbound={"auto_subscribe": True}, inbound_mappings=[REDEEM])
    payload = event_request(tenant, custom_event("redeem"), custom_event("redeem"), customer="C-dup")
    await send(payload)
    await drain_queue()
    await send(payload)  # mParticle's retry after the first one was applied: queued again, skipped
    await send(payload)
    await drain_queue()
    assert len(await reader_for(client, admin_headers, tenant).ledger("C-dup")) == 2
    async with sessionmaker() as session:
        processed = await session.scalar(
            select(func.count()).select_from(ProcessedRequest).where(ProcessedRequest.tenant_id == tenant.id)
        )
    assert processed == 1


async def test_unmapped_event_types_are_ignored_silently(
    new_tenant, send, drain_queue, client, admin_headers, sessionmaker
) -> None:
    tenant = await new_tenant(inbound_mappings=[REDEEM])
    ignored = [
        {"type": "session_start", "id": "s", "timestamp_ms": 1},
        {"type": "user_attribute_change", "id": "u", "timestamp_ms": 1, "added": {"tier": "gold"}},
        custom_event("not_mapped"),
    ]
    await send(event_request(tenant, *ignored, customer="C-unknown"))
    await drain_queue()
    assert await reader_for(client, admin_headers, tenant).customers() == []
    assert await errors_of(sessionmaker, tenant) == []


async def test_unexpected_failure_is_logged_and_leaves_nothing_half_done(
    new_tenant, send, drain_queue, client, admin_headers, sessionmaker
) -> None:
    mapping = REDEEM | {"attributes": {"note": "{note}"}}
    tenant = await new_tenant(inbound={"auto_subscribe": True}, inbound_mappings=[mapping])
    # A constraint of this test's tenant makes the ledger insert fail after the customer insert.
    constraint = f"test_refuses_boom_{tenant.id.replace('-', '_')}"
    async with sessionmaker() as session:
        await session.execute(
            text(
                f"ALTER TABLE ledger_event ADD CONSTRAINT {constraint} "
                f"CHECK (tenant_id <> '{tenant.id}' OR data->>'note' IS DISTINCT FROM 'boom') NOT VALID"
            )
        )
        await session.commit()
    bad = event_request(tenant, custom_event("redeem", {"note": "boom"}), customer="C-fail")
    good = event_request(tenant, custom_event("redeem", {"note": "fine"}), customer="C-fine")
    try:
        await send(bad)
        await send(good)  # queued behind it, in the same batch
        await drain_queue()
    finally:
        async with sessionmaker() as session:
            await session.execute(text(f"ALTER TABLE ledger_event DROP CONSTRAINT {constraint}"))
            await session.commit()
    entries = await logged_errors(sessionmaker, tenant.id)
    assert [(e.source, e.error_code, e.request_id) for e in entries] == [
        ("engine_processing", "PROCESSING_FAILED", bad["id"])
    ]
    assert logged_payload(entries[0])["id"] == bad["id"]
    reader = reader_for(client, admin_headers, tenant)
    assert [c["id"] for c in await reader.customers()] == ["C-fine"], "the bad request left nothing behind"
    assert [e["data"] for e in await reader.ledger("C-fine")] == [{"note": "fine"}], "the good one was applied"


async def test_one_batch_applies_its_requests_in_queue_order(
    new_tenant, send, drain_queue, client, admin_headers, sessionmaker
) -> None:
    tenant = await new_tenant(
        inbound={"track_audience_data": True},
        inbound_mappings=[
            REDEEM,
            OPT_IN | {"attributes": {"tier": "{tier}", "source": "app"}},
            PROFILE | {"attributes": {"tier": "{tier}"}},
        ],
    )
    requests = [
        event_request(tenant, custom_event("redeem"), customer="C-b"),  # unknown yet: rejected
        event_request(tenant, custom_event("sign_up", {"tier": "silver"}), customer="C-b"),  # creates, active
        event_request(tenant, custom_event("profile_update", {"tier": "gold"}), customer="C-b"),  # merges
        event_request(tenant, custom_event("redeem"), customer="C-b"),  # known now
        membership_request(tenant, profile("C-b", (5, "Loyal", "add"))),
    ]
    for payload in requests:
        await send(payload)
    await drain_queue()  # one batch
    reader = reader_for(client, admin_headers, tenant)
    customer = await reader.customer("C-b")
    assert (customer["status"], customer["attributes"]) == ("active", {"tier": "gold", "source": "app"})
    assert [(e["action"], e["request_id"]) for e in await reader.ledger("C-b")] == [
        ("opt_in", requests[1]["id"]),
        ("profile", requests[2]["id"]),
        ("points_redeemed", requests[3]["id"]),
    ]
    entries = await logged_errors(sessionmaker, tenant.id)
    assert [(e.error_code, e.request_id) for e in entries] == [("CUSTOMER_NOT_FOUND", requests[0]["id"])]
    [loyal] = await reader.lists()
    assert await reader.members(loyal["id"]) == ["C-b"]


async def test_one_batch_of_several_tenants_keeps_them_apart(
    new_tenant, send, drain_queue, client, admin_headers
) -> None:
    by_id = await new_tenant(inbound={"auto_subscribe": True}, inbound_mappings=[REDEEM])
    by_email = await new_tenant(
        inbound={"customer_identifier_field": "email", "loyalty_identifier_field": "email", "auto_subscribe": True},
        inbound_mappings=[REDEEM | {"loyalty_event": "email_redeem"}],
    )
    for tenant in (by_id, by_email, by_id):
        identities = [identity("customer", "same"), identity("email", "same@example.com")]
        await send(event_request(tenant, custom_event("redeem"), identities=identities))
    await drain_queue()
    first = reader_for(client, admin_headers, by_id)
    second = reader_for(client, admin_headers, by_email)
    assert [c["id"] for c in await first.customers()] == ["same"]
    assert [e["action"] for e in await first.ledger("same")] == ["points_redeemed", "points_redeemed"]
    [customer] = await second.customers()
    assert customer["attributes"] == {"email": "same@example.com"}
    assert [e["action"] for e in await second.ledger(customer["id"])] == ["email_redeem"]


async def test_tenant_disconnected_before_processing(new_tenant, send, drain_queue, sessionmaker) -> None:
    tenant = await new_tenant(inbound={"auto_subscribe": True}, inbound_mappings=[REDEEM])
    await send(event_request(tenant, custom_event("redeem")))
    async with sessionmaker() as session:
        await session.execute(delete(OutboundSettings).where(OutboundSettings.tenant_id == tenant.id))
        await session.commit()
    await drain_queue()
    assert await errors_of(sessionmaker, tenant) == [("engine_request", "TENANT_DISCONNECTED")]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).where(LedgerEvent.tenant_id == tenant.id)) == 0


async def test_audiences_are_ignored_unless_tracked(new_tenant, send, drain_queue, client, admin_headers, sessionmaker):
    tenant = await new_tenant(inbound={"auto_subscribe": True})
    await send(subscription_request(tenant, 11, "VIP", "add"))
    await send(membership_request(tenant, profile("C-1", (11, "VIP", "add")), profile("C-2", (12, "New", "add"))))
    await drain_queue()
    reader = reader_for(client, admin_headers, tenant)
    assert await reader.lists() == []
    assert await reader.customers() == []
    assert await errors_of(sessionmaker, tenant) == []


async def test_audience_lifecycle(new_tenant, send, drain_queue, client, admin_headers, sessionmaker) -> None:
    tenant = await new_tenant(inbound={"track_audience_data": True, "auto_subscribe": True})
    reader = reader_for(client, admin_headers, tenant)

    async def lists() -> dict[int, tuple[str, str, int]]:
        return {lst["audience_id"]: (lst["name"], lst["status"], lst["member_count"]) for lst in await reader.lists()}

    await send(subscription_request(tenant, 11, "VIP", "add"))
    await drain_queue()
    await send(subscription_request(tenant, 11, "VIP again", "add"))  # idempotent
    await drain_queue()
    assert await lists() == {11: ("VIP", "active", 0)}

    await send(subscription_request(tenant, 11, "Very Important", "update"))
    await drain_queue()
    await send(
        membership_request(
            tenant,
            profile("C-1", (11, "Very Important", "add"), (12, "Newcomers", "add")),
            profile("C-2", (11, "Very Important", "add"), (13, "Churn", "attribute_update")),
        )
    )
    await drain_queue()
    assert await lists() == {11: ("Very Important", "active", 2), 12: ("Newcomers", "active", 1)}
    vip_id = next(lst["id"] for lst in await reader.lists() if lst["audience_id"] == 11)
    assert await reader.members(vip_id) == ["C-1", "C-2"]
    assert {c["id"]: c["status"] for c in await reader.customers()} == {"C-1": "inactive", "C-2": "inactive"}

    await send(membership_request(tenant, profile("C-1", (11, "Very Important", "delete"))))
    await drain_queue()
    assert await reader.members(vip_id) == ["C-2"]

    await send(subscription_request(tenant, 11, "Very Important", "remove"))
    await drain_queue()
    assert await lists() == {12: ("Newcomers", "active", 1)}
    assert await errors_of(sessionmaker, tenant) == []


async def test_inactive_list_refuses_members(
    new_tenant, send, drain_queue, client, admin_headers, sessionmaker
) -> None:
    tenant = await new_tenant(inbound={"track_audience_data": True, "auto_subscribe": True})
    reader = reader_for(client, admin_headers, tenant)
    await send(subscription_request(tenant, 21, "Paused", "add"))
    await drain_queue()
    [paused] = await reader.lists()
    response = await client.patch(
        f"/api/v1/tenants/{tenant.id}/lists/{paused['id']}", json={"status": "inactive"}, headers=admin_headers
    )
    assert response.status_code == 200
    await send(membership_request(tenant, profile("C-1", (21, "Paused", "add")), profile("C-2", (21, "Paused", "add"))))
    await drain_queue()
    assert await reader.members(paused["id"]) == []
    entries = await logged_errors(sessionmaker, tenant.id)
    assert [(e.source, e.error_code) for e in entries] == [("engine_processing", "LIST_INACTIVE")]
    assert "Paused" in entries[0].message and "2 customer(s)" in entries[0].message


async def test_unknown_members_without_auto_subscribe(
    new_tenant, send, drain_queue, client, admin_headers, sessionmaker
):
    tenant = await new_tenant(inbound={"track_audience_data": True})
    await send(
        membership_request(
            tenant,
            profile("C-x", (31, "VIP", "add")),
            profile("C-y", (31, "VIP", "delete")),  # removing an unknown customer: nothing to do
            {"mpid": "42", "audiences": [{"audience_id": 31, "audience_name": "VIP", "action": "add"}]},
        )
    )
    await drain_queue()
    entries = await logged_errors(sessionmaker, tenant.id)
    assert sorted((e.source, e.error_code) for e in entries) == [
        ("engine_request", "CUSTOMER_NOT_FOUND"),
        ("engine_request", "MISSING_IDENTIFIER"),
    ]
    not_found = next(e for e in entries if e.error_code == "CUSTOMER_NOT_FOUND")
    assert "'C-x'" in not_found.message and "C-y" not in not_found.message
    assert await reader_for(client, admin_headers, tenant).lists() == [], "nobody was added, so no list"


async def test_dsr_erasure_clears_the_customers_attributes(new_tenant, send, drain_queue, client, admin_headers):
    tenant = await new_tenant(inbound={"auto_subscribe": True}, inbound_mappings=[PROFILE | {"attributes": {"x": "1"}}])
    await send(event_request(tenant, custom_event("profile_update"), customer="C-gdpr"))
    await drain_queue()
    reader = reader_for(client, admin_headers, tenant)
    assert (await reader.customer("C-gdpr"))["attributes"] == {"x": "1"}
    dsr = {
        "type": "dsr_processing_request",
        "id": str(uuid.uuid4()),
        "timestamp_ms": 1714592744067,
        "firehose_version": "3.2.0",
        "account": event_request(tenant)["account"],
        "subject_request_id": "1e2c8cf4-f985-4398-b482-a520860d3bf6",
        "subject_request_type": "erasure",
        "submitted_time": 1714592744.067235,
        "subject_identities": {"controller_customer_id": {"encoding": "raw", "value": "C-gdpr"}},
        "regulation": "gdpr",
    }
    await send(dsr)
    await drain_queue()
    assert (await reader.customer("C-gdpr"))["attributes"] == {}
    assert len(await reader.ledger("C-gdpr")) == 1, "the write-once ledger stays"


async def test_nul_characters_are_replaced_not_lost(
    new_tenant, settings, drain_queue, client, admin_headers, sessionmaker
) -> None:
    mapping = PROFILE | {"attributes": {"note": "{note}"}}
    tenant = await new_tenant(inbound={"auto_subscribe": True}, inbound_mappings=[mapping])
    # PostgreSQL text and jsonb refuse U+0000: the worker stores U+FFFD instead, and says so. Queued
    # directly: whatever the proxy lets through, the worker must not lose the request.
    payload = event_request(
        tenant, custom_event("profile_update", {"note": "a\u0000b", "k\u0000": 1}), customer="C-nul"
    )
    redis = Redis.from_url(settings.redis_url)
    try:
        queue = FirehoseQueue(redis, settings.queue_name)
        body = json.dumps(payload)
        assert await queue.enqueue(
            tenant_id=tenant.id, request_id=payload["id"], body=body, received_at_ms=recent_ms(0), priority=0
        )
    finally:
        await redis.aclose()
    await drain_queue()
    reader = reader_for(client, admin_headers, tenant)
    [entry] = await reader.ledger("C-nul")
    assert entry["data"] == {"note": "a\ufffdb"}
    assert (await reader.customer("C-nul"))["attributes"] == {"note": "a\ufffdb"}
    [logged] = await logged_errors(sessionmaker, tenant.id)
    assert (logged.source, logged.error_code, logged.request_id) == ("engine_request", "NUL_REPLACED", payload["id"])
    assert logged_payload(logged)["events"][0]["attributes"] == {"note": "a\ufffdb", "k\ufffd": 1}
