"""Admin routes over outbound messages: lists, filters, pagination, detail, resend queue, retry, cancel."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import OutboundAttempt, OutboundMessage
from shared.settings import Settings
from tests.e2e.outbound.conftest import start_worker
from tests.e2e.outbound.helpers import S2STenant, load_message, make_s2s_tenant, post_ok, status_is, wait_until
from tests.fakes.s2s_server import FakeS2SServer

SUMMARY_FIELDS = {
    "id",
    "kind",
    "customer_id",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "created_at",
    "delivered_at",
}


async def set_state(sessionmaker: async_sessionmaker[AsyncSession], message_id: uuid.UUID, **values: Any) -> None:
    async with sessionmaker() as session:
        await session.execute(update(OutboundMessage).where(OutboundMessage.id == message_id).values(**values))
        await session.commit()


async def add_attempt(
    sessionmaker: async_sessionmaker[AsyncSession], message_id: uuid.UUID, status_code: int | None, error: str | None
) -> None:
    async with sessionmaker() as session:
        session.add(OutboundAttempt(message_id=message_id, at=datetime.now(UTC), status_code=status_code, error=error))
        await session.commit()


@pytest.fixture
async def tenant(sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer) -> S2STenant:
    return await make_s2s_tenant(
        sessionmaker,
        fake_s2s,
        external_events=[{"loyalty_event": "point_add", "event_name": "p", "custom_event_type": "other"}],
    )


@pytest.fixture
async def messages(client: httpx.AsyncClient, tenant: S2STenant) -> list[uuid.UUID]:
    """Four messages in acceptance order: two customer updates (c-1, c-2), an event and a marketing one (c-1)."""
    return [
        await post_ok(client, tenant, "customer-updates", {"customer": {"id": "c-1"}}),
        await post_ok(client, tenant, "customer-updates", {"customer": {"id": "c-2"}}),
        await post_ok(client, tenant, "events", {"customer": {"id": "c-1"}, "action": "point_add"}),
        await post_ok(
            client,
            tenant,
            "marketing-communications",
            {"customer": {"id": "c-1"}, "event_name": "mail", "event_type": "other"},
        ),
    ]


def messages_url(tenant: S2STenant, suffix: str = "") -> str:
    return f"/api/v1/tenants/{tenant.id}/outbound/messages{suffix}"


class TestList:
    async def test_newest_first_with_the_summary_fields(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        tenant: S2STenant,
        messages: list[uuid.UUID],
    ) -> None:
        response = await client.get(messages_url(tenant), headers=admin_headers)
        assert response.status_code == 200
        body = response.json()
        assert body["next_cursor"] is None
        assert [item["id"] for item in body["items"]] == [str(m) for m in reversed(messages)]
        assert all(set(item) == SUMMARY_FIELDS for item in body["items"])
        first = body["items"][-1]
        assert (first["kind"], first["customer_id"], first["status"], first["attempts"]) == (
            "customer_update",
            "c-1",
            "queued",
            0,
        )
        assert first["next_attempt_at"] is not None and first["delivered_at"] is None

    @pytest.mark.parametrize(
        ("query", "expected_positions"),
        [
            ("kind=customer_update", [1, 0]),
            ("kind=event", [2]),
            ("kind=marketing_communication", [3]),
            ("customer_id=c-1", [3, 2, 0]),
            ("customer_id=c-2&kind=customer_update", [1]),
            ("status=queued", [3, 2]),
            ("status=delivered", [0]),
            ("status=failed&customer_id=c-2", [1]),
            ("status=retrying", []),
            ("customer_id=nobody", []),
        ],
    )
    async def test_filters(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant: S2STenant,
        messages: list[uuid.UUID],
        query: str,
        expected_positions: list[int],
    ) -> None:
        await set_state(sessionmaker, messages[0], status="delivered", delivered_at=datetime.now(UTC))
        await set_state(sessionmaker, messages[1], status="failed")
        response = await client.get(messages_url(tenant, f"?{query}"), headers=admin_headers)
        assert response.status_code == 200
        assert [item["id"] for item in response.json()["items"]] == [str(messages[p]) for p in expected_positions]

    async def test_pages_follow_the_cursor(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        tenant: S2STenant,
        messages: list[uuid.UUID],
    ) -> None:
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            response = await client.get(messages_url(tenant), params=params, headers=admin_headers)
            assert response.status_code == 200
            body = response.json()
            seen += [item["id"] for item in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert pages == 2
        assert seen == [str(m) for m in reversed(messages)]

    async def test_only_the_tenants_own_messages(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
        messages: list[uuid.UUID],
    ) -> None:
        other = await make_s2s_tenant(sessionmaker, fake_s2s)
        response = await client.get(messages_url(other), headers=admin_headers)
        assert response.status_code == 200
        assert response.json() == {"items": [], "next_cursor": None}

    @pytest.mark.parametrize(
        "query", ["status=sent", "kind=email", "limit=0", "limit=501", "cursor=not-a-cursor", "cursor=WyJ4Il0"]
    )
    async def test_invalid_queries_422(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], tenant: S2STenant, query: str
    ) -> None:
        response = await client.get(messages_url(tenant, f"?{query}"), headers=admin_headers)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "VALIDATION_FAILED"

    @pytest.mark.parametrize("path", ["/outbound/messages", "/resend-queue"])
    async def test_unknown_tenant_404(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], path: str
    ) -> None:
        response = await client.get(f"/api/v1/tenants/t-{uuid.uuid4().hex[:10]}{path}", headers=admin_headers)
        assert response.status_code == 404

    @pytest.mark.parametrize(
        ("method", "suffix"),
        [
            ("GET", ""),
            ("GET", "/00000000-0000-4000-8000-000000000000"),
            ("POST", "/00000000-0000-4000-8000-000000000000/retry"),
            ("DELETE", "/00000000-0000-4000-8000-000000000000"),
        ],
    )
    async def test_admin_key_required(
        self, client: httpx.AsyncClient, tenant: S2STenant, method: str, suffix: str
    ) -> None:
        response = await client.request(method, messages_url(tenant, suffix), headers=tenant.engine_headers)
        assert response.status_code == 401


class TestResendQueue:
    async def test_lists_only_messages_waiting_for_a_resend(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant: S2STenant,
        messages: list[uuid.UUID],
    ) -> None:
        await set_state(sessionmaker, messages[1], status="retrying", attempts=2, last_status_code=503)
        await set_state(sessionmaker, messages[3], status="retrying", attempts=1, last_status_code=429)
        await set_state(sessionmaker, messages[0], status="failed")
        response = await client.get(f"/api/v1/tenants/{tenant.id}/resend-queue", headers=admin_headers)
        assert response.status_code == 200
        items = response.json()["items"]
        assert [(i["id"], i["attempts"], i["last_status_code"]) for i in items] == [
            (str(messages[3]), 1, 429),
            (str(messages[1]), 2, 503),
        ]


class TestDetail:
    async def test_the_batch_and_the_attempt_log(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant: S2STenant,
        messages: list[uuid.UUID],
    ) -> None:
        message_id = messages[2]
        await add_attempt(sessionmaker, message_id, None, "timeout: no answer within 1s")
        await add_attempt(sessionmaker, message_id, 503, "HTTP 503")
        await set_state(sessionmaker, message_id, status="retrying", attempts=2, last_status_code=503)
        response = await client.get(messages_url(tenant, f"/{message_id}"), headers=admin_headers)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == SUMMARY_FIELDS | {"batch", "attempt_log"}
        stored = await load_message(sessionmaker, message_id)
        assert body["batch"] == stored.batch
        assert body["batch"]["events"][0]["data"]["event_name"] == "p"
        assert [(a["status_code"], a["error"]) for a in body["attempt_log"]] == [
            (None, "timeout: no answer within 1s"),
            (503, "HTTP 503"),
        ]
        assert all(set(a) == {"attempt_id", "at", "trigger", "status_code", "error"} for a in body["attempt_log"])
        assert [a["trigger"] for a in body["attempt_log"]] == ["automatic", "automatic"]
        first_id, second_id = (a["attempt_id"] for a in body["attempt_log"])
        assert first_id < second_id
        assert (body["status"], body["attempts"]) == ("retrying", 2)

    @pytest.mark.parametrize("message_id", ["not-a-uuid", "00000000-0000-4000-8000-000000000000", "123"])
    async def test_unknown_or_malformed_ids_404(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], tenant: S2STenant, message_id: str
    ) -> None:
        response = await client.get(messages_url(tenant, f"/{message_id}"), headers=admin_headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"

    async def test_another_tenants_message_is_not_found(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
        messages: list[uuid.UUID],
    ) -> None:
        other = await make_s2s_tenant(sessionmaker, fake_s2s)
        for method, suffix in (("GET", ""), ("POST", "/retry"), ("DELETE", "")):
            response = await client.request(
                method, messages_url(other, f"/{messages[0]}{suffix}"), headers=admin_headers
            )
            assert response.status_code == 404, (method, suffix)
        assert (await load_message(sessionmaker, messages[0])).status == "queued"


class TestRetry:
    async def test_a_failed_message_goes_back_in_the_queue(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant: S2STenant,
        messages: list[uuid.UUID],
    ) -> None:
        message_id = messages[0]
        await add_attempt(sessionmaker, message_id, 400, "HTTP 400: BAD_REQUEST: nope")
        await set_state(
            sessionmaker, message_id, status="failed", attempts=1, last_status_code=400, next_attempt_at=None
        )
        before = datetime.now(UTC)
        response = await client.post(messages_url(tenant, f"/{message_id}/retry"), headers=admin_headers)
        assert response.status_code == 200
        body = response.json()
        assert (body["status"], body["attempts"]) == ("queued", 0)
        assert datetime.fromisoformat(body["next_attempt_at"]) >= before
        detail = (await client.get(messages_url(tenant, f"/{message_id}"), headers=admin_headers)).json()
        assert [a["status_code"] for a in detail["attempt_log"]] == [400]

    @pytest.mark.parametrize("status", ["queued", "retrying", "delivered", "cancelled"])
    async def test_only_failed_messages_409(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant: S2STenant,
        messages: list[uuid.UUID],
        status: str,
    ) -> None:
        await set_state(sessionmaker, messages[0], status=status)
        response = await client.post(messages_url(tenant, f"/{messages[0]}/retry"), headers=admin_headers)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "CONFLICT"
        assert (await load_message(sessionmaker, messages[0])).status == status


class TestCancel:
    @pytest.mark.parametrize("status", ["queued", "retrying", "failed"])
    async def test_an_undelivered_message_is_cancelled(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant: S2STenant,
        messages: list[uuid.UUID],
        status: str,
    ) -> None:
        await set_state(sessionmaker, messages[0], status=status)
        response = await client.delete(messages_url(tenant, f"/{messages[0]}"), headers=admin_headers)
        assert response.status_code == 200
        assert (response.json()["status"], response.json()["next_attempt_at"]) == ("cancelled", None)
        assert (await load_message(sessionmaker, messages[0])).status == "cancelled"

    @pytest.mark.parametrize("status", ["delivered", "cancelled"])
    async def test_delivered_or_cancelled_409(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant: S2STenant,
        messages: list[uuid.UUID],
        status: str,
    ) -> None:
        await set_state(sessionmaker, messages[0], status=status)
        response = await client.delete(messages_url(tenant, f"/{messages[0]}"), headers=admin_headers)
        assert response.status_code == 409
        assert (await load_message(sessionmaker, messages[0])).status == status

    async def test_a_cancelled_message_is_never_sent(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
        tenant: S2STenant,
        messages: list[uuid.UUID],
    ) -> None:
        response = await client.delete(messages_url(tenant, f"/{messages[0]}"), headers=admin_headers)
        assert response.status_code == 200
        stop = await start_worker(settings)
        try:
            for message_id in messages[1:]:
                await wait_until(status_is(sessionmaker, message_id, "delivered"), message="the others")
        finally:
            await stop()
        cancelled = await load_message(sessionmaker, messages[0])
        assert (cancelled.status, cancelled.attempts) == ("cancelled", 0)
        sent = {a.batch["source_request_id"] for a in fake_s2s.accepted(tenant.api_key)}
        assert cancelled.batch["source_request_id"] not in sent
        assert len(sent) == 3
