"""Operating outbound delivery: retry failed messages by filter (dry run first), the attempt log's
identity and trigger of a manual retry, and pausing / resuming a tenant's delivery."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.models import OutboundAttempt, OutboundMessage
from shared.outbound.messages import OutboundMessageRepository
from tests.e2e.outbound.helpers import (
    S2STenant,
    load_attempts,
    load_message,
    load_messages,
    make_s2s_tenant,
    post_ok,
    status_is,
    wait_until,
)
from tests.fakes.s2s_server import FakeS2SServer
from worker.outbound.service import OutboundDelivery

T_OLD = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
T_NEW = T_OLD + timedelta(hours=2)


async def set_state(sessionmaker: async_sessionmaker[AsyncSession], message_id: uuid.UUID, **values: Any) -> None:
    async with sessionmaker() as session:
        await session.execute(update(OutboundMessage).where(OutboundMessage.id == message_id).values(**values))
        await session.commit()


def retry_url(tenant: S2STenant | str, query: str = "") -> str:
    tenant_id = tenant if isinstance(tenant, str) else tenant.id
    return f"/api/v1/tenants/{tenant_id}/outbound/messages/retry" + (f"?{query}" if query else "")


@pytest.fixture
async def tenant(sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer) -> S2STenant:
    return await make_s2s_tenant(
        sessionmaker,
        fake_s2s,
        external_events=[{"loyalty_event": "point_add", "event_name": "p", "custom_event_type": "other"}],
    )


@pytest.fixture
async def messages(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], tenant: S2STenant
) -> list[uuid.UUID]:
    """Five messages: three failed (different kinds, customers, status codes and ages), one
    delivered, one queued."""
    ids = [
        await post_ok(client, tenant, "customer-updates", {"customer": {"id": "a"}}),
        await post_ok(client, tenant, "events", {"customer": {"id": "b"}, "action": "point_add"}),
        await post_ok(client, tenant, "customer-updates", {"customer": {"id": "c"}}),
        await post_ok(
            client,
            tenant,
            "marketing-communications",
            {"customer": {"id": "d"}, "event_name": "mail", "event_type": "other"},
        ),
        await post_ok(client, tenant, "customer-updates", {"customer": {"id": "e"}}),
    ]
    failed = {"status": "failed", "next_attempt_at": None, "attempts": 6}
    await set_state(sessionmaker, ids[0], **failed, last_status_code=400, created_at=T_OLD)
    await set_state(sessionmaker, ids[1], **failed, last_status_code=503, created_at=T_NEW)
    await set_state(sessionmaker, ids[2], status="delivered", last_status_code=202, created_at=T_NEW)
    await set_state(sessionmaker, ids[3], **failed, last_status_code=400, created_at=T_NEW)
    await set_state(sessionmaker, ids[4], created_at=T_NEW)
    return ids


class TestRetryByFilter:
    @pytest.mark.parametrize(
        ("query", "expected_count"),
        [
            ("", 3),
            ("status=failed", 3),
            ("status=queued", 0),  # only failed messages are ever retried
            ("status=delivered", 0),
            ("kind=event", 1),
            ("kind=customer_update", 1),
            ("customer_id=d", 1),
            ("customer_id=c", 0),
            ("last_status_code=400", 2),
            ("last_status_code=503", 1),
            (f"created_from={(T_OLD + timedelta(hours=1)).isoformat()}", 2),
            (f"created_to={(T_OLD + timedelta(hours=1)).isoformat()}", 1),
            (f"created_from={T_OLD.isoformat()}&created_to={T_OLD.isoformat()}", 1),
            ("last_status_code=400&kind=marketing_communication", 1),
        ],
    )
    async def test_a_dry_run_counts_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        tenant: S2STenant,
        messages: list[uuid.UUID],
        query: str,
        expected_count: int,
    ) -> None:
        url = retry_url(tenant, "&".join(part for part in (query, "dry_run=true") if part))
        response = await client.post(url.replace("+00:00", "Z"), headers=admin_headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"count": expected_count}
        assert [m.status for m in await load_messages(sessionmaker, tenant.id)] == [
            "failed",
            "failed",
            "delivered",
            "failed",
            "queued",
        ]

    async def test_retry_requeues_only_the_matching_failed_messages(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
        tenant: S2STenant,
        messages: list[uuid.UUID],
    ) -> None:
        other = await make_s2s_tenant(sessionmaker, fake_s2s)
        other_failed = await post_ok(client, other, "customer-updates", {"customer": {"id": "a"}})
        await set_state(sessionmaker, other_failed, status="failed", next_attempt_at=None, last_status_code=400)

        response = await client.post(retry_url(tenant, "last_status_code=400"), headers=admin_headers)
        assert response.status_code == 202, response.text
        assert response.json() == {"count": 2}
        by_id = {m.id: m for m in await load_messages(sessionmaker, tenant.id)}
        for requeued in (messages[0], messages[3]):
            message = by_id[requeued]
            assert (message.status, message.attempts, message.next_attempt_trigger) == ("queued", 0, "manual_retry")
            assert message.next_attempt_at is not None
        assert by_id[messages[1]].status == "failed"  # a 503, not matched
        assert by_id[messages[2]].status == "delivered"
        # Another tenant's failed message is never touched.
        assert (await load_message(sessionmaker, other_failed)).status == "failed"
        # Retrying again finds nothing left to retry.
        again = await client.post(retry_url(tenant, "last_status_code=400"), headers=admin_headers)
        assert again.json() == {"count": 0}

    @pytest.mark.parametrize(
        "query",
        [
            "last_status_code=abc",
            "last_status_code=42",
            "kind=email",
            "status=sent",
            "created_from=yesterday",
            "created_from=2030-01-02T00:00:00Z&created_to=2030-01-01T00:00:00Z",
        ],
    )
    async def test_invalid_filters_422(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], tenant: S2STenant, query: str
    ) -> None:
        response = await client.post(retry_url(tenant, query), headers=admin_headers)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "VALIDATION_FAILED"

    async def test_unknown_tenant_404_and_admin_key_required(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str], tenant: S2STenant
    ) -> None:
        unknown = await client.post(retry_url(f"t-{uuid.uuid4().hex[:10]}"), headers=admin_headers)
        assert unknown.status_code == 404
        engine_key = await client.post(retry_url(tenant), headers=tenant.engine_headers)
        assert engine_key.status_code == 401

    async def test_the_list_takes_the_same_filters(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        tenant: S2STenant,
        messages: list[uuid.UUID],
    ) -> None:
        url = f"/api/v1/tenants/{tenant.id}/outbound/messages"
        response = await client.get(url, params={"last_status_code": 400}, headers=admin_headers)
        assert [item["id"] for item in response.json()["items"]] == [str(messages[3]), str(messages[0])]
        created_to = (T_OLD + timedelta(hours=1)).isoformat()
        response = await client.get(url, params={"created_to": created_to}, headers=admin_headers)
        assert [item["id"] for item in response.json()["items"]] == [str(messages[0])]


@pytest.mark.usefixtures("running_worker")
async def test_a_manual_retry_is_a_new_attempt_marked_as_such(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    fake_s2s: FakeS2SServer,
) -> None:
    tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
    fake_s2s.fail(400, times=1, api_key=tenant.api_key)
    message_id = await post_ok(client, tenant, "customer-updates", {"customer": {"id": "c-1"}})
    await wait_until(status_is(sessionmaker, message_id, "failed"), message="failed on the 400")

    response = await client.post(retry_url(tenant, "customer_id=c-1"), headers=admin_headers)
    assert response.json() == {"count": 1}
    await wait_until(status_is(sessionmaker, message_id, "delivered"), message="delivered after the retry")

    detail = (
        await client.get(f"/api/v1/tenants/{tenant.id}/outbound/messages/{message_id}", headers=admin_headers)
    ).json()
    log = detail["attempt_log"]
    assert [(a["trigger"], a["status_code"]) for a in log] == [("automatic", 400), ("manual_retry", 202)]
    assert log[0]["attempt_id"] != log[1]["attempt_id"]
    # The retried message counts its attempts afresh, and the schedule's trigger is back for later ones.
    message = await load_message(sessionmaker, message_id)
    assert (message.attempts, message.next_attempt_trigger) == (1, "automatic")
    # Same batch, same ids: mParticle can tell the retry is the same message.
    sent = [a.batch["source_request_id"] for a in fake_s2s.accepted(tenant.api_key)]
    assert sent == [message.batch["source_request_id"]]


class TestPauseAndResume:
    async def test_paused_calls_are_accepted_and_wait_then_go_in_order(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
        delivery: OutboundDelivery,
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
        busy_neighbour = await make_s2s_tenant(sessionmaker, fake_s2s)
        paused = await client.post(f"/api/v1/tenants/{tenant.id}/outbound/pause", headers=admin_headers)
        assert paused.status_code == 200, paused.text
        paused_at = paused.json()["outbound_paused_at"]
        assert paused.json()["paused"] is True and paused_at is not None
        shown = (await client.get(f"/api/v1/tenants/{tenant.id}", headers=admin_headers)).json()
        assert shown["outbound_paused_at"] == paused_at
        # Pausing again keeps the original time.
        again = await client.post(f"/api/v1/tenants/{tenant.id}/outbound/pause", headers=admin_headers)
        assert again.json()["outbound_paused_at"] == paused_at

        accepted = [
            await post_ok(client, tenant, "customer-updates", {"customer": {"id": customer, "n": n}})
            for n, customer in enumerate(["a", "b", "a", "c", "a"])
        ]
        neighbour_message = await post_ok(client, busy_neighbour, "customer-updates", {"customer": {"id": "a"}})
        async with session_scope(sessionmaker) as session:
            due = await OutboundMessageRepository(session).tenants_with_due_messages(datetime.now(UTC), 10_000)
        assert tenant.id not in due and busy_neighbour.id in due
        run = await delivery.deliver_tenant(tenant.id)
        assert (run.delivered, run.retrying, run.failed) == (0, 0, 0)
        assert fake_s2s.requests(tenant.api_key) == []
        assert all(m.status == "queued" for m in await load_messages(sessionmaker, tenant.id))
        # Another tenant is not held up.
        await delivery.deliver_tenant(busy_neighbour.id)
        assert (await load_message(sessionmaker, neighbour_message)).status == "delivered"

        resumed = await client.post(f"/api/v1/tenants/{tenant.id}/outbound/resume", headers=admin_headers)
        assert resumed.status_code == 200
        assert resumed.json() == {"tenant_id": tenant.id, "paused": False, "outbound_paused_at": None}
        shown = (await client.get(f"/api/v1/tenants/{tenant.id}", headers=admin_headers)).json()
        assert shown["outbound_paused_at"] is None
        while (await delivery.deliver_tenant(tenant.id)).delivered:
            pass
        stored = await load_messages(sessionmaker, tenant.id)
        assert [m.id for m in stored] == accepted
        assert all(m.status == "delivered" for m in stored)
        sent = [a.batch["source_request_id"] for a in fake_s2s.accepted(tenant.api_key)]
        for customer in ("a", "b", "c"):
            own = [m.batch["source_request_id"] for m in stored if m.customer_id == customer]
            assert [request_id for request_id in sent if request_id in own] == own

    @pytest.mark.parametrize("action", ["pause", "resume"])
    async def test_unknown_tenant_404_and_admin_key_required(
        self,
        client: httpx.AsyncClient,
        admin_headers: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
        action: str,
    ) -> None:
        unknown = await client.post(
            f"/api/v1/tenants/t-{uuid.uuid4().hex[:10]}/outbound/{action}", headers=admin_headers
        )
        assert unknown.status_code == 404
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
        response = await client.post(f"/api/v1/tenants/{tenant.id}/outbound/{action}", headers=tenant.engine_headers)
        assert response.status_code == 401
        shown = (await client.get(f"/api/v1/tenants/{tenant.id}", headers=admin_headers)).json()
        assert shown["outbound_paused_at"] is None


async def test_the_attempt_log_survives_a_retry(
    sessionmaker: async_sessionmaker[AsyncSession],
    fake_s2s: FakeS2SServer,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    """The attempts made before a manual retry stay in the log (the counter starts over, the log does not)."""
    tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
    message_id = await post_ok(client, tenant, "customer-updates", {"customer": {"id": "a"}})
    await set_state(sessionmaker, message_id, status="failed", attempts=3, next_attempt_at=None)
    async with sessionmaker() as session:
        session.add(OutboundAttempt(message_id=message_id, at=T_OLD, status_code=503, error="HTTP 503"))
        await session.commit()
    assert (await client.post(retry_url(tenant), headers=admin_headers)).json() == {"count": 1}
    assert [a.status_code for a in await load_attempts(sessionmaker, message_id)] == [503]
    assert (await load_message(sessionmaker, message_id)).attempts == 0
