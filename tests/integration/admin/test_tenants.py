"""Admin API: authentication, the tenant lifecycle and engine keys, over HTTP against PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.credentials import hash_key
from shared.models import (
    Customer,
    CustomerList,
    IncomingError,
    LedgerEvent,
    ListMember,
    OutboundAttempt,
    ProcessedRequest,
    Tenant,
)
from shared.secret_box import secret_box_for
from tests.conftest import SECRET_KEY
from tests.factories import make_tenant
from tests.integration.admin_helpers import (
    OUTBOUND_BODY,
    assert_error,
    connect_tenant,
    count_tenant_rows,
    create_tenant,
    new_tenant_id,
    outbound_message,
)

T = "{t}"
# Every route of the tenant and configuration admin API, with a valid body where one is needed.
ADMIN_ROUTES = [
    ("POST", "/api/v1/tenants", {"id": "auth-probe", "name": "Probe"}),
    ("GET", "/api/v1/tenants", None),
    ("GET", f"/api/v1/tenants/{T}", None),
    ("DELETE", f"/api/v1/tenants/{T}", None),
    ("POST", f"/api/v1/tenants/{T}/engine-key/rotate", None),
    ("GET", f"/api/v1/tenants/{T}/outbound-settings", None),
    ("PUT", f"/api/v1/tenants/{T}/outbound-settings", OUTBOUND_BODY),
    ("GET", f"/api/v1/tenants/{T}/inbound-settings", None),
    ("PUT", f"/api/v1/tenants/{T}/inbound-settings", {"customer_identifier_field": "email"}),
    ("POST", f"/api/v1/tenants/{T}/inbound-settings/token/rotate", None),
    ("GET", f"/api/v1/tenants/{T}/sync-fields", None),
    ("PUT", f"/api/v1/tenants/{T}/sync-fields", {"items": [{"loyalty_field": "a", "remote_field": "b"}]}),
    ("GET", f"/api/v1/tenants/{T}/external-events", None),
    (
        "PUT",
        f"/api/v1/tenants/{T}/external-events",
        {"items": [{"loyalty_event": "a", "event_name": "A", "custom_event_type": "other"}]},
    ),
    ("GET", f"/api/v1/tenants/{T}/inbound-mappings", None),
    (
        "PUT",
        f"/api/v1/tenants/{T}/inbound-mappings",
        {"items": [{"loyalty_event": "a", "event_type": "session_start"}]},
    ),
    ("DELETE", f"/api/v1/tenants/{T}/connection", None),
]


class TestAdminAuthentication:
    @pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES, ids=[f"{m} {p}" for m, p, _ in ADMIN_ROUTES])
    async def test_refused_without_or_with_a_wrong_key_and_changes_nothing(
        self, client, sessionmaker, method, path, body
    ) -> None:
        tenant = await make_tenant(sessionmaker)
        before = await count_tenant_rows(sessionmaker, tenant.id)

        for headers in ({}, {"Authorization": "Bearer wrong-key"}):
            response = await client.request(method, path.replace(T, tenant.id), json=body, headers=headers)
            assert_error(response, 401, "UNAUTHORIZED")

        assert await count_tenant_rows(sessionmaker, tenant.id) == before
        async with sessionmaker() as session:
            row = await session.get(Tenant, tenant.id)
            assert row is not None and row.engine_key_hash == hash_key(tenant.engine_api_key)
            assert secret_box_for(SECRET_KEY).decrypt(row.inbound_token_encrypted) == tenant.inbound_token
            assert await session.get(Tenant, "auth-probe") is None

    @pytest.mark.parametrize(
        "authorization",
        ["Basic dGVzdC1hZG1pbi1rZXktMDEyMzQ1Njc4OQ==", "Bearer ", "test-admin-key-0123456789", "Bearer test-admin-key"],
    )
    async def test_malformed_or_partial_credentials_are_refused(self, client, authorization) -> None:
        response = await client.get("/api/v1/tenants", headers={"Authorization": authorization})
        assert_error(response, 401, "UNAUTHORIZED")


class TestCreateTenant:
    async def test_returns_the_engine_key_once_and_stores_only_its_hash(
        self, client, admin_headers, sessionmaker
    ) -> None:
        tenant_id = new_tenant_id()
        response = await client.post(
            "/api/v1/tenants", json={"id": tenant_id, "name": "ACME production"}, headers=admin_headers
        )

        assert response.status_code == 201
        body = response.json()
        assert set(body) == {"id", "name", "created_at", "connected", "outbound_paused_at", "engine_api_key"}
        assert body["outbound_paused_at"] is None
        assert (body["id"], body["name"], body["connected"]) == (tenant_id, "ACME production", False)
        assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
        async with sessionmaker() as session:
            row = await session.get(Tenant, tenant_id)
        assert row is not None
        assert row.engine_key_hash == hash_key(body["engine_api_key"])
        assert body["engine_api_key"] not in (row.engine_key_hash, row.name, row.inbound_token_encrypted)
        again = await client.get(f"/api/v1/tenants/{tenant_id}", headers=admin_headers)
        assert again.status_code == 200
        assert body["engine_api_key"] not in again.text
        assert again.json() == {k: v for k, v in body.items() if k != "engine_api_key"}

    async def test_each_tenant_gets_a_different_engine_key(self, client, admin_headers) -> None:
        first = await create_tenant(client, admin_headers)
        second = await create_tenant(client, admin_headers)
        assert first["engine_api_key"] != second["engine_api_key"]

    async def test_an_existing_id_is_a_conflict_and_keeps_the_original(
        self, client, admin_headers, sessionmaker
    ) -> None:
        created = await create_tenant(client, admin_headers)

        response = await client.post(
            "/api/v1/tenants", json={"id": created["id"], "name": "Impostor"}, headers=admin_headers
        )

        assert_error(response, 409, "CONFLICT")
        async with sessionmaker() as session:
            row = await session.get(Tenant, created["id"])
        assert row is not None and row.name == created["name"]
        assert row.engine_key_hash == hash_key(created["engine_api_key"])

    @pytest.mark.parametrize(
        "body",
        [
            {"id": "", "name": "x"},
            {"id": "Upper", "name": "x"},
            {"id": "-leading-dash", "name": "x"},
            {"id": "_leading-underscore", "name": "x"},
            {"id": "a" * 65, "name": "x"},
            {"id": "has space", "name": "x"},
            {"id": "dot.ted", "name": "x"},
            {"id": "slash/ed", "name": "x"},
            {"id": "ümlaut", "name": "x"},
            {"id": "trailing-newline\n", "name": "x"},
            {"id": 123, "name": "x"},
            {"id": "valid-id"},
            {"id": "valid-id", "name": ""},
            {"id": "valid-id", "name": "   "},
            {"id": "valid-id", "name": "n" * 201},
            {"id": "valid-id", "name": "x", "unexpected": True},
        ],
    )
    async def test_invalid_bodies_are_422(self, client, admin_headers, sessionmaker, body) -> None:
        response = await client.post("/api/v1/tenants", json=body, headers=admin_headers)

        assert_error(response, 422, "VALIDATION_FAILED")
        async with sessionmaker() as session:
            assert await session.get(Tenant, "valid-id") is None

    @pytest.mark.parametrize("tenant_id", ["a", "0", "9" * 64, "acme_prod-2"])
    async def test_boundary_ids_are_accepted(self, client, admin_headers, tenant_id) -> None:
        response = await client.post("/api/v1/tenants", json={"id": tenant_id, "name": "x"}, headers=admin_headers)
        assert response.status_code == 201, response.text
        assert response.json()["id"] == tenant_id


class TestListTenants:
    async def test_pages_through_every_tenant_in_id_order(self, client, admin_headers) -> None:
        prefix = f"p{uuid.uuid4().hex[:8]}"
        mine = [f"{prefix}-{n}" for n in range(5)]
        for tenant_id in reversed(mine):
            await create_tenant(client, admin_headers, tenant_id)
        await connect_tenant(client, admin_headers, mine[2])

        seen: list[dict[str, Any]] = []
        cursor = None
        pages = 0
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            response = await client.get("/api/v1/tenants", params=params, headers=admin_headers)
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body) == {"items", "next_cursor"}
            assert len(body["items"]) <= 2
            seen.extend(body["items"])
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break

        ids = [item["id"] for item in seen]
        assert ids == sorted(ids) and len(ids) == len(set(ids))
        assert pages >= 3
        by_id = {item["id"]: item for item in seen}
        assert [tenant_id for tenant_id in ids if tenant_id.startswith(prefix)] == mine
        assert [by_id[tenant_id]["connected"] for tenant_id in mine] == [False, False, True, False, False]
        assert set(by_id[mine[0]]) == {"id", "name", "created_at", "connected", "outbound_paused_at"}

    async def test_default_page_is_at_most_50(self, client, admin_headers) -> None:
        response = await client.get("/api/v1/tenants", headers=admin_headers)
        assert response.status_code == 200
        assert len(response.json()["items"]) <= 50

    @pytest.mark.parametrize(
        "params", [{"limit": 0}, {"limit": 501}, {"limit": "ten"}, {"cursor": "%%%not-a-cursor"}, {"cursor": "e30"}]
    )
    async def test_bad_paging_parameters_are_422(self, client, admin_headers, params) -> None:
        response = await client.get("/api/v1/tenants", params=params, headers=admin_headers)
        assert_error(response, 422, "VALIDATION_FAILED")


class TestGetTenant:
    async def test_reads_one_tenant(self, client, admin_headers) -> None:
        created = await create_tenant(client, admin_headers)
        response = await client.get(f"/api/v1/tenants/{created['id']}", headers=admin_headers)
        assert response.status_code == 200
        assert response.json()["name"] == created["name"]

    @pytest.mark.parametrize(
        ("method", "suffix"),
        [
            ("GET", ""),
            ("DELETE", ""),
            ("POST", "/engine-key/rotate"),
            ("GET", "/outbound-settings"),
            ("GET", "/inbound-settings"),
            ("GET", "/sync-fields"),
            ("GET", "/external-events"),
            ("GET", "/inbound-mappings"),
            ("DELETE", "/connection"),
        ],
    )
    async def test_unknown_or_malformed_ids_are_404(self, client, admin_headers, method, suffix) -> None:
        for tenant_id in ("t-does-not-exist", "UPPER", "a" * 65, "bad id", "-x", "x%00y", "caf%C3%A9"):
            response = await client.request(method, f"/api/v1/tenants/{tenant_id}{suffix}", headers=admin_headers)
            assert_error(response, 404, "NOT_FOUND")


class TestDeleteTenant:
    async def test_removes_every_row_of_the_tenant_and_nothing_else(self, client, admin_headers, sessionmaker) -> None:
        doomed = await _tenant_with_data(sessionmaker)
        kept = await _tenant_with_data(sessionmaker)
        kept_before = await count_tenant_rows(sessionmaker, kept)
        assert all(count > 0 for count in (await count_tenant_rows(sessionmaker, doomed)).values())

        response = await client.delete(f"/api/v1/tenants/{doomed}", headers=admin_headers)

        assert response.status_code == 204
        assert response.content == b""
        assert set((await count_tenant_rows(sessionmaker, doomed)).values()) == {0}
        assert await count_tenant_rows(sessionmaker, kept) == kept_before
        assert_error(await client.get(f"/api/v1/tenants/{doomed}", headers=admin_headers), 404, "NOT_FOUND")
        assert_error(await client.delete(f"/api/v1/tenants/{doomed}", headers=admin_headers), 404, "NOT_FOUND")

    async def test_a_deleted_id_can_be_created_again_empty(self, client, admin_headers, sessionmaker) -> None:
        tenant_id = await _tenant_with_data(sessionmaker)
        assert (await client.delete(f"/api/v1/tenants/{tenant_id}", headers=admin_headers)).status_code == 204

        recreated = await create_tenant(client, admin_headers, tenant_id)

        assert recreated["connected"] is False
        counts = await count_tenant_rows(sessionmaker, tenant_id)
        assert counts.pop("tenant") == 1
        assert set(counts.values()) == {0}


class TestEngineKeyRotation:
    async def test_rotation_replaces_the_stored_hash(self, client, admin_headers, sessionmaker) -> None:
        created = await create_tenant(client, admin_headers)
        old_key = created["engine_api_key"]

        response = await client.post(f"/api/v1/tenants/{created['id']}/engine-key/rotate", headers=admin_headers)

        assert response.status_code == 200
        assert set(response.json()) == {"engine_api_key"}
        new_key = response.json()["engine_api_key"]
        assert new_key != old_key
        async with sessionmaker() as session:
            row = await session.get(Tenant, created["id"])
            assert row is not None and row.engine_key_hash == hash_key(new_key)
            holders_of_old = await session.scalar(
                select(func.count()).select_from(Tenant).where(Tenant.engine_key_hash == hash_key(old_key))
            )
        assert holders_of_old == 0


class TestConnectedFlag:
    async def test_follows_outbound_settings_and_disconnect(self, client, admin_headers) -> None:
        tenant_id = (await create_tenant(client, admin_headers))["id"]
        url = f"/api/v1/tenants/{tenant_id}"
        assert (await client.get(url, headers=admin_headers)).json()["connected"] is False

        await connect_tenant(client, admin_headers, tenant_id)
        assert (await client.get(url, headers=admin_headers)).json()["connected"] is True

        assert (await client.delete(f"{url}/connection", headers=admin_headers)).status_code == 204
        assert (await client.get(url, headers=admin_headers)).json()["connected"] is False


async def _tenant_with_data(sessionmaker) -> str:
    """A connected tenant with a row in every table that can hold tenant data."""
    tenant = await make_tenant(
        sessionmaker,
        inbound_mappings=[{"loyalty_event": "visit", "event_type": "session_start"}],
        sync_fields=[{"loyalty_field": "first_name", "remote_field": "$firstname"}],
        external_events=[{"loyalty_event": "reward", "event_name": "Reward", "custom_event_type": "other"}],
    )
    now = datetime.now(UTC)
    async with sessionmaker() as session:
        session.add(Customer(tenant_id=tenant.id, id="c-1", status="active", attributes={"email": "a@example.test"}))
        customer_list = CustomerList(tenant_id=tenant.id, name="VIP", status="active", audience_id=1)
        session.add(customer_list)
        message = outbound_message(tenant.id, "delivered")
        session.add(message)
        session.add(
            IncomingError(
                tenant_id=tenant.id,
                error_code="CUSTOMER_NOT_FOUND",
                message="m",
                source="engine_request",
                created_at=now,
            )
        )
        session.add(ProcessedRequest(tenant_id=tenant.id, request_id="r-1"))
        await session.flush()
        session.add(
            LedgerEvent(
                tenant_id=tenant.id, customer_id="c-1", action="visit", data={}, source="mparticle", occurred_at=now
            )
        )
        session.add(ListMember(list_id=customer_list.id, customer_id="c-1", tenant_id=tenant.id))
        session.add(OutboundAttempt(message_id=message.id, at=now, status_code=202))
        await session.commit()
    return tenant.id
