"""The outbound API's edge: engine-key auth, validation, durability before the 202, skipping."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.credentials import hash_key, new_engine_key
from shared.models import OutboundSettings, Tenant
from shared.secret_box import secret_box_for
from shared.settings import Settings
from tests.conftest import SECRET_KEY
from tests.e2e.outbound.helpers import S2STenant, load_message, load_messages, make_s2s_tenant
from tests.factories import make_tenant
from tests.fakes.s2s_server import FakeS2SServer

CUSTOMER_UPDATE = {"customer": {"id": "c-1", "email": "jane@example.com", "first_name": "Jane"}}
ROUTES: list[tuple[str, dict[str, Any]]] = [
    ("customer-updates", CUSTOMER_UPDATE),
    ("events", {"customer": {"id": "c-1"}, "action": "point_add", "data": {"points": 10}}),
    (
        "marketing-communications",
        {"customer": {"id": "c-1"}, "event_name": "point_add", "event_type": "other", "data": {"points": "10"}},
    ),
]


@pytest.fixture
async def tenant(sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer) -> S2STenant:
    return await make_s2s_tenant(
        sessionmaker,
        fake_s2s,
        sync_fields=[{"loyalty_field": "first_name", "remote_field": "$firstname"}],
        external_events=[
            {"loyalty_event": "point_add", "event_name": "antavo_point_add", "custom_event_type": "transaction"}
        ],
    )


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


class TestEngineKeyAuthentication:
    @pytest.mark.parametrize(("path", "body"), ROUTES)
    async def test_without_a_key_401(self, client: httpx.AsyncClient, tenant: S2STenant, path: str, body: Any) -> None:
        response = await client.post(tenant.url(path), json=body)
        assert response.status_code == 401
        assert error_code(response) == "UNAUTHORIZED"

    @pytest.mark.parametrize("header", ["Bearer lbk_not-a-key", "Bearer ", "Basic dXNlcjpwYXNz"])
    async def test_with_an_unknown_key_401(self, client: httpx.AsyncClient, tenant: S2STenant, header: str) -> None:
        response = await client.post(
            tenant.url("customer-updates"), json=CUSTOMER_UPDATE, headers={"Authorization": header}
        )
        assert response.status_code == 401

    async def test_the_admin_key_is_not_an_engine_key(
        self, client: httpx.AsyncClient, tenant: S2STenant, admin_headers: dict[str, str]
    ) -> None:
        response = await client.post(tenant.url("customer-updates"), json=CUSTOMER_UPDATE, headers=admin_headers)
        assert response.status_code == 401

    @pytest.mark.parametrize(("path", "body"), ROUTES)
    async def test_another_tenants_key_403(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
        tenant: S2STenant,
        path: str,
        body: Any,
    ) -> None:
        other = await make_s2s_tenant(sessionmaker, fake_s2s)
        response = await client.post(tenant.url(path), json=body, headers=other.engine_headers)
        assert response.status_code == 403
        assert error_code(response) == "FORBIDDEN"
        assert await load_messages(sessionmaker, tenant.id) == []
        assert await load_messages(sessionmaker, other.id) == []

    async def test_an_unknown_tenant_does_not_reveal_itself(self, client: httpx.AsyncClient, tenant: S2STenant) -> None:
        url = f"/api/v1/tenants/t-{uuid.uuid4().hex[:10]}/outbound/customer-updates"
        with_valid_key = await client.post(url, json=CUSTOMER_UPDATE, headers=tenant.engine_headers)
        with_unknown_key = await client.post(url, json=CUSTOMER_UPDATE, headers={"Authorization": "Bearer nope"})
        assert (with_valid_key.status_code, with_unknown_key.status_code) == (403, 401)

    @pytest.mark.parametrize(("path", "body"), ROUTES)
    async def test_a_tenant_without_outbound_settings_409(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], path: str, body: Any
    ) -> None:
        unconnected = await make_tenant(sessionmaker, connected=False)
        response = await client.post(
            f"/api/v1/tenants/{unconnected.id}/outbound/{path}",
            json=body,
            headers={"Authorization": f"Bearer {unconnected.engine_api_key}"},
        )
        assert response.status_code == 409
        assert error_code(response) == "NOT_CONNECTED"

    async def test_a_replaced_key_stops_working(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], tenant: S2STenant
    ) -> None:
        new_key = new_engine_key()
        async with sessionmaker() as session:
            await session.execute(
                update(Tenant).where(Tenant.id == tenant.id).values(engine_key_hash=hash_key(new_key))
            )
            await session.commit()
        old = await client.post(tenant.url("customer-updates"), json=CUSTOMER_UPDATE, headers=tenant.engine_headers)
        new = await client.post(
            tenant.url("customer-updates"), json=CUSTOMER_UPDATE, headers={"Authorization": f"Bearer {new_key}"}
        )
        assert (old.status_code, new.status_code) == (401, 202)

    async def test_a_tenant_disconnected_behind_the_cache_409(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], tenant: S2STenant
    ) -> None:
        first = await client.post(tenant.url("customer-updates"), json=CUSTOMER_UPDATE, headers=tenant.engine_headers)
        assert first.status_code == 202
        # No revision bump: the proxy's cache still holds the tenant as connected; the store does not.
        async with sessionmaker() as session:
            await session.execute(delete(OutboundSettings).where(OutboundSettings.tenant_id == tenant.id))
            await session.commit()
        response = await client.post(
            tenant.url("customer-updates"), json=CUSTOMER_UPDATE, headers=tenant.engine_headers
        )
        assert response.status_code == 409
        assert error_code(response) == "NOT_CONNECTED"
        assert [m.id for m in await load_messages(sessionmaker, tenant.id)] == [uuid.UUID(first.json()["message_id"])]

    async def test_a_tenant_reconnected_behind_the_cache_is_accepted_at_once(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        admin_headers: dict[str, str],
        tenant: S2STenant,
    ) -> None:
        disconnect = await client.delete(f"/api/v1/tenants/{tenant.id}/connection", headers=admin_headers)
        assert disconnect.status_code in (200, 204)
        refused = await client.post(tenant.url("customer-updates"), json=CUSTOMER_UPDATE, headers=tenant.engine_headers)
        assert refused.status_code == 409
        # Reconnected without a revision bump: only a lookup before the 409 can see it.
        async with sessionmaker() as session:
            session.add(
                OutboundSettings(
                    tenant_id=tenant.id,
                    api_url="https://s2s.mparticle.com",
                    api_key=tenant.api_key,
                    api_secret_encrypted=secret_box_for(SECRET_KEY).encrypt(tenant.api_secret),
                    development=False,
                    sync_only_configured_identifiers=False,
                    loyalty_identifier_field="id",
                    customer_identifier_field="customer_id",
                )
            )
            await session.commit()
        response = await client.post(
            tenant.url("customer-updates"), json=CUSTOMER_UPDATE, headers=tenant.engine_headers
        )
        assert response.status_code == 202, response.text

    async def test_a_deleted_tenants_key_stops_working(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], tenant: S2STenant
    ) -> None:
        assert (
            await client.post(tenant.url("customer-updates"), json=CUSTOMER_UPDATE, headers=tenant.engine_headers)
        ).status_code == 202
        async with sessionmaker() as session:
            await session.execute(delete(Tenant).where(Tenant.id == tenant.id))
            await session.commit()
        response = await client.post(
            tenant.url("customer-updates"), json=CUSTOMER_UPDATE, headers=tenant.engine_headers
        )
        assert response.status_code == 401
        assert await load_messages(sessionmaker, tenant.id) == []

    async def test_a_rotated_key_works_at_once_and_the_old_one_stops(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], tenant: S2STenant
    ) -> None:
        rotated = await client.post(f"/api/v1/tenants/{tenant.id}/engine-key/rotate", headers=admin_headers)
        new_headers = {"Authorization": f"Bearer {rotated.json()['engine_api_key']}"}
        new = await client.post(tenant.url("customer-updates"), json=CUSTOMER_UPDATE, headers=new_headers)
        old = await client.post(tenant.url("customer-updates"), json=CUSTOMER_UPDATE, headers=tenant.engine_headers)
        assert (new.status_code, old.status_code) == (202, 401)

    async def test_the_openapi_documents_the_engine_key_and_the_tenant_path_parameter(
        self, client: httpx.AsyncClient
    ) -> None:
        spec = (await client.get("/openapi.json")).json()
        assert spec["components"]["securitySchemes"]["EngineKey"] == {
            "type": "http",
            "scheme": "bearer",
            "description": "The tenant's engine API key",
        }
        for path, _ in ROUTES:
            operation = spec["paths"][f"/api/v1/tenants/{{tenant_id}}/outbound/{path}"]["post"]
            assert operation["security"] == [{"EngineKey": []}]
            assert [p["name"] for p in operation["parameters"] if p["in"] == "path"] == ["tenant_id"]
            assert operation["requestBody"]["required"] is True


class TestValidation:
    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("customer-updates", {}),
            ("customer-updates", {"customer": {"email": "a@x.io"}}),
            ("customer-updates", {"customer": {"id": ""}}),
            ("customer-updates", {"customer": {"id": True}}),
            ("customer-updates", {"customer": {"id": {"n": 1}}}),
            ("customer-updates", {"customer": "c-1"}),
            ("customer-updates", {"customer": {"id": "c-1"}, "unexpected": 1}),
            ("events", {"customer": {"id": "c-1"}}),
            ("events", {"customer": {"id": "c-1"}, "action": ""}),
            ("events", {"customer": {"id": "c-1"}, "action": "point_add", "data": []}),
            ("events", {"customer": {"id": "c-1"}, "action": "point_add", "occurred_at": "yesterday"}),
            ("events", {"customer": {"id": "c-1"}, "action": "point_add", "occurred_at": -1}),
            ("events", {"customer": {"id": "c-1"}, "action": "point_add", "occurred_at": True}),
            ("marketing-communications", {"customer": {"id": "c-1"}, "event_name": "x", "event_type": "email"}),
            ("marketing-communications", {"customer": {"id": "c-1"}, "event_name": "", "event_type": "other"}),
            ("marketing-communications", {"customer": {"id": "c-1"}, "event_type": "other"}),
        ],
    )
    async def test_invalid_bodies_422(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant: S2STenant,
        path: str,
        body: Any,
    ) -> None:
        response = await client.post(tenant.url(path), json=body, headers=tenant.engine_headers)
        assert response.status_code == 422, response.text
        assert error_code(response) == "VALIDATION_FAILED"
        assert await load_messages(sessionmaker, tenant.id) == []

    async def test_malformed_json_422(self, client: httpx.AsyncClient, tenant: S2STenant) -> None:
        response = await client.post(
            tenant.url("customer-updates"),
            content=b"{not json",
            headers={**tenant.engine_headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 422

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("customer-updates", {"customer": {"id": "c-1", "email": "a@x.io"}}),
            ("events", {"customer": {"email": "a@x.io"}, "action": "point_add"}),
            ("marketing-communications", {"customer": {"id": "c-1"}, "event_name": "x", "event_type": "other"}),
        ],
    )
    async def test_a_customer_without_the_configured_identity_422(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
        path: str,
        body: Any,
    ) -> None:
        tenant = await make_s2s_tenant(
            sessionmaker,
            fake_s2s,
            outbound={
                "sync_only_configured_identifiers": True,
                "loyalty_identifier_field": "card_number",
                "customer_identifier_field": "other",
            },
            external_events=[{"loyalty_event": "point_add", "event_name": "p", "custom_event_type": "other"}],
        )
        response = await client.post(tenant.url(path), json=body, headers=tenant.engine_headers)
        assert response.status_code == 422
        assert error_code(response) == "NO_IDENTITY"
        assert await load_messages(sessionmaker, tenant.id) == []

    async def test_a_value_postgresql_cannot_store_is_refused_422(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], tenant: S2STenant
    ) -> None:
        body = {"customer": {"id": "c-1"}, "event_name": "x", "event_type": "other", "data": {"note": "a\u0000b"}}
        response = await client.post(tenant.url("marketing-communications"), json=body, headers=tenant.engine_headers)
        assert response.status_code == 422
        assert error_code(response) == "VALIDATION_FAILED"
        assert await load_messages(sessionmaker, tenant.id) == []

    async def test_a_batch_over_128_kb_is_refused(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], tenant: S2STenant
    ) -> None:
        body = {"customer": {"id": "c-1"}, "event_name": "big", "event_type": "other", "data": {"blob": "x" * 140_000}}
        response = await client.post(tenant.url("marketing-communications"), json=body, headers=tenant.engine_headers)
        assert response.status_code == 422
        assert error_code(response) == "BATCH_TOO_LARGE"
        assert await load_messages(sessionmaker, tenant.id) == []

    async def test_a_body_over_1_mib_is_refused_413(self, client: httpx.AsyncClient, tenant: S2STenant) -> None:
        body = {"customer": {"id": "c-1", "notes": "x" * (1024 * 1024)}}
        response = await client.post(tenant.url("customer-updates"), json=body, headers=tenant.engine_headers)
        assert response.status_code == 413
        assert error_code(response) == "PAYLOAD_TOO_LARGE"


class TestAcceptance:
    @pytest.mark.parametrize(
        ("path", "body", "kind"),
        [
            (path, body, kind)
            for (path, body), kind in zip(ROUTES, ["customer_update", "event", "marketing_communication"], strict=True)
        ],
    )
    async def test_the_message_is_stored_before_the_202(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant: S2STenant,
        path: str,
        body: Any,
        kind: str,
    ) -> None:
        response = await client.post(tenant.url(path), json=body, headers=tenant.engine_headers)
        assert response.status_code == 202
        assert response.json()["status"] == "queued"
        message = await load_message(sessionmaker, uuid.UUID(response.json()["message_id"]))
        assert (message.tenant_id, message.kind, message.customer_id, message.status) == (
            tenant.id,
            kind,
            "c-1",
            "queued",
        )
        assert message.attempts == 0
        assert message.next_attempt_at is not None
        assert message.batch["environment"] == "production"

    @pytest.mark.parametrize("action", ["checkout", "POINT_ADD", "point_add "])
    async def test_an_unmapped_action_is_skipped(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], tenant: S2STenant, action: str
    ) -> None:
        response = await client.post(
            tenant.url("events"), json={"customer": {"id": "c-1"}, "action": action}, headers=tenant.engine_headers
        )
        assert response.status_code == 202
        assert response.json() == {"message_id": None, "status": "skipped"}
        assert await load_messages(sessionmaker, tenant.id) == []

    async def test_values_json_cannot_carry_are_sent_as_text(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], tenant: S2STenant
    ) -> None:
        body = (
            b'{"customer":{"id":"c-1"},"event_name":"x","event_type":"other",'
            b'"data":{"big":123456789012345678901234567890,"nan":NaN,"nested":{"big":123456789012345678901234567890}}}'
        )
        response = await client.post(
            tenant.url("marketing-communications"),
            content=body,
            headers={**tenant.engine_headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text
        message = await load_message(sessionmaker, uuid.UUID(response.json()["message_id"]))
        assert message.batch["events"][0]["data"]["custom_attributes"] == {
            "big": "123456789012345678901234567890",
            "nan": "nan",
            "nested": '{"big":123456789012345678901234567890}',
        }

    async def test_accepted_while_redis_is_down(
        self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], tenant: S2STenant
    ) -> None:
        from proxy.app import create_app

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        app = create_app(settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port}/0"}))
        async with (
            LifespanManager(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client,
        ):
            response = await client.post(
                tenant.url("customer-updates"), json=CUSTOMER_UPDATE, headers=tenant.engine_headers
            )
        assert response.status_code == 202
        message = await load_message(sessionmaker, uuid.UUID(response.json()["message_id"]))
        assert message.status == "queued"
