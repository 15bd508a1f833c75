"""Admin read routes of loyalty records: customers, ledgers, lists, members; pagination, filters,
validation, 404s and tenant isolation. Records are arranged directly in PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.inbound.customer_lists import CustomerListRepository
from shared.inbound.customers import CustomerBatchRepository, NewLedgerEntry, NewLedgerRow, append_ledger_rows
from shared.mapping.inbound import NewCustomer
from tests.factories import make_tenant
from tests.inbound_helpers import AdminReader


async def add_customer(sessionmaker, tenant_id: str, customer_id: str, status: str = "active", **attributes: Any):
    async with sessionmaker() as session:
        await CustomerBatchRepository(session).create_if_absent(
            [NewCustomer(tenant_id, customer_id, status, attributes)]
        )
        await session.commit()


async def add_ledger(sessionmaker, tenant_id: str, customer_id: str, *actions: str) -> None:
    async with sessionmaker() as session:
        entries = [
            NewLedgerEntry(
                action, {"n": index}, f"e{index}", f"req/{customer_id}/{index}", datetime(2024, 5, 1, tzinfo=UTC)
            )
            for index, action in enumerate(actions)
        ]
        rows = [NewLedgerRow(tenant_id, customer_id, "req-1", entry) for entry in entries]
        await append_ledger_rows(session, rows, source="mparticle")
        await session.commit()


async def add_list(sessionmaker, tenant_id: str, audience_id: int, name: str, *members: str) -> int:
    async with sessionmaker() as session:
        lists = CustomerListRepository(session, tenant_id)
        customer_list = await lists.ensure_for_audience(audience_id, name)
        for member in members:
            await lists.add_member(customer_list.id, member)
        await session.commit()
        return customer_list.id


@pytest.fixture
async def tenant(sessionmaker):
    return await make_tenant(sessionmaker)


@pytest.fixture
def reader(client, admin_headers, tenant) -> AdminReader:
    return AdminReader(client, admin_headers, tenant.id)


async def test_customers_are_listed_in_id_order_across_pages(sessionmaker, tenant, reader) -> None:
    for index in (3, 1, 4, 0, 2):
        await add_customer(sessionmaker, tenant.id, f"C-{index}", tier="gold" if index % 2 else "silver")
    first = await reader.get("/customers", limit=2)
    assert [c["id"] for c in first["items"]] == ["C-0", "C-1"]
    assert first["next_cursor"]
    second = await reader.get("/customers", limit=2, cursor=first["next_cursor"])
    assert [c["id"] for c in second["items"]] == ["C-2", "C-3"]
    third = await reader.get("/customers", limit=2, cursor=second["next_cursor"])
    assert [c["id"] for c in third["items"]] == ["C-4"]
    assert third["next_cursor"] is None
    customer = first["items"][1]
    assert set(customer) == {"id", "status", "attributes", "created_at", "updated_at"}
    assert customer["attributes"] == {"tier": "gold"}


async def test_exactly_one_page_has_no_next_cursor(sessionmaker, tenant, reader) -> None:
    for index in range(2):
        await add_customer(sessionmaker, tenant.id, f"C-{index}")
    page = await reader.get("/customers", limit=2)
    assert len(page["items"]) == 2
    assert page["next_cursor"] is None


async def test_customers_filtered_by_attribute_and_status(sessionmaker, tenant, reader) -> None:
    await add_customer(sessionmaker, tenant.id, "A", "active", email="a@x", points=42, vip=True)
    await add_customer(sessionmaker, tenant.id, "B", "inactive", email="b@x", points="42")
    await add_customer(sessionmaker, tenant.id, "C", "inactive", email="a@x")

    async def ids(**params: Any) -> list[str]:
        return [c["id"] for c in await reader.customers(**params)]

    assert await ids(attribute="email", value="a@x") == ["A", "C"]
    assert await ids(attribute="email", value="a@x", status="inactive") == ["C"]
    assert await ids(status="active") == ["A"]
    assert await ids(attribute="points", value="42") == ["A", "B"], "numbers match their text too"
    assert await ids(attribute="vip", value="true") == ["A"]
    assert await ids(attribute="email", value="nobody@x") == []


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"status": "deleted"}, id="unknown-status"),
        pytest.param({"attribute": "email"}, id="attribute-without-value"),
        pytest.param({"value": "x"}, id="value-without-attribute"),
        pytest.param({"limit": 0}, id="limit-zero"),
        pytest.param({"limit": 501}, id="limit-over-max"),
        pytest.param({"cursor": "%%%"}, id="garbage-cursor"),
        pytest.param({"cursor": "MTIz"}, id="cursor-of-wrong-kind"),
    ],
)
async def test_customer_query_validation_is_422(reader, client, admin_headers, params) -> None:
    response = await client.get(f"{reader.base}/customers", params=params, headers=admin_headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_FAILED"


async def test_customer_and_its_ledger(sessionmaker, tenant, reader) -> None:
    await add_customer(sessionmaker, tenant.id, "C-1", "inactive", tier="gold")
    await add_ledger(sessionmaker, tenant.id, "C-1", "opt_in", "purchase", "profile")
    customer = await reader.customer("C-1")
    assert (customer["id"], customer["status"], customer["attributes"]) == ("C-1", "inactive", {"tier": "gold"})
    first = await reader.get("/customers/C-1/events", limit=2)
    second = await reader.get("/customers/C-1/events", limit=2, cursor=first["next_cursor"])
    events = first["items"] + second["items"]
    assert second["next_cursor"] is None
    assert [e["action"] for e in events] == ["opt_in", "purchase", "profile"]
    assert set(events[0]) == {
        "id",
        "action",
        "data",
        "source",
        "request_id",
        "source_event_id",
        "occurred_at",
        "recorded_at",
    }
    assert (events[1]["data"], events[1]["source"], events[1]["request_id"], events[1]["source_event_id"]) == (
        {"n": 1},
        "mparticle",
        "req-1",
        "e1",
    )
    assert events[0]["occurred_at"] == "2024-05-01T00:00:00Z"


async def test_lists_members_and_patch(sessionmaker, tenant, reader, client, admin_headers) -> None:
    for customer_id in ("C-1", "C-2", "C-3"):
        await add_customer(sessionmaker, tenant.id, customer_id)
    vip = await add_list(sessionmaker, tenant.id, 11, "VIP", "C-2", "C-1", "C-3")
    empty = await add_list(sessionmaker, tenant.id, 12, "Empty")
    assert await reader.lists() == [
        {"id": vip, "name": "VIP", "status": "active", "audience_id": 11, "member_count": 3},
        {"id": empty, "name": "Empty", "status": "active", "audience_id": 12, "member_count": 0},
    ]
    page = await reader.get(f"/lists/{vip}/members", limit=2)
    assert [m["customer_id"] for m in page["items"]] == ["C-1", "C-2"]
    assert set(page["items"][0]) == {"customer_id", "added_at"}
    assert await reader.members(vip) == ["C-1", "C-2", "C-3"]

    url = f"{reader.base}/lists/{vip}"
    renamed = await client.patch(url, json={"name": "Very Important"}, headers=admin_headers)
    assert renamed.status_code == 200
    assert renamed.json() == {
        "id": vip,
        "name": "Very Important",
        "status": "active",
        "audience_id": 11,
        "member_count": 3,
    }
    paused = await client.patch(url, json={"status": "inactive"}, headers=admin_headers)
    assert (paused.json()["name"], paused.json()["status"]) == ("Very Important", "inactive")
    assert await reader.get(f"/lists/{vip}") == {
        "id": vip,
        "name": "Very Important",
        "status": "inactive",
        "audience_id": 11,
        "member_count": 3,
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"status": "paused"}, id="unknown-status"),
        pytest.param({"name": ""}, id="empty-name"),
        pytest.param({"name": "x" * 501}, id="name-too-long"),
        pytest.param({"name": 5}, id="numeric-name"),
        pytest.param({"audience_id": 3}, id="unknown-field"),
        pytest.param(["x"], id="not-an-object"),
    ],
)
async def test_patch_validation_is_422(sessionmaker, tenant, reader, client, admin_headers, body) -> None:
    list_id = await add_list(sessionmaker, tenant.id, 11, "VIP")
    response = await client.patch(f"{reader.base}/lists/{list_id}", json=body, headers=admin_headers)
    assert response.status_code == 422
    assert (await reader.lists())[0]["name"] == "VIP"


@pytest.mark.parametrize(
    "path",
    [
        "/customers/nobody",
        "/customers/nobody/events",
        "/lists/999999999",
        "/lists/not-a-number/members",
        "/lists/99999999999999999999999/members",
        "/lists/0/members",
    ],
)
async def test_unknown_resources_are_404(tenant, reader, client, admin_headers, path) -> None:
    response = await client.get(reader.base + path, headers=admin_headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "path", ["/customers", "/customers/C-1", "/customers/C-1/events", "/lists", "/lists/1/members"]
)
async def test_unknown_tenant_is_404(client, admin_headers, path) -> None:
    response = await client.get(f"/api/v1/tenants/t-does-not-exist{path}", headers=admin_headers)
    assert response.status_code == 404


async def test_records_need_the_admin_key(tenant, reader, client) -> None:
    for path in ("/customers", "/lists"):
        response = await client.get(reader.base + path, headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401


async def test_one_tenant_never_sees_another_ones_records(sessionmaker, tenant, client, admin_headers) -> None:
    other = await make_tenant(sessionmaker)
    await add_customer(sessionmaker, other.id, "C-other", tier="gold")
    await add_ledger(sessionmaker, other.id, "C-other", "purchase")
    other_list = await add_list(sessionmaker, other.id, 11, "Theirs", "C-other")
    await add_customer(sessionmaker, tenant.id, "C-mine")
    await add_list(sessionmaker, tenant.id, 11, "Mine")

    mine = AdminReader(client, admin_headers, tenant.id)
    assert [c["id"] for c in await mine.customers()] == ["C-mine"]
    assert await mine.customers(attribute="tier", value="gold") == []
    assert [lst["name"] for lst in await mine.lists()] == ["Mine"]
    base = f"/api/v1/tenants/{tenant.id}"
    for path in ("/customers/C-other", "/customers/C-other/events", f"/lists/{other_list}/members"):
        assert (await client.get(base + path, headers=admin_headers)).status_code == 404
    patch = await client.patch(f"{base}/lists/{other_list}", json={"name": "Hijacked"}, headers=admin_headers)
    assert patch.status_code == 404
    assert [lst["name"] for lst in await AdminReader(client, admin_headers, other.id).lists()] == ["Theirs"]
