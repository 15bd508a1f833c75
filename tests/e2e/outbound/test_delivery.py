"""Delivery under faults: resends (5xx, 429 + Retry-After, timeouts, refused connections), no resend
after other 4xx, giving up and manual retry, per-customer order, disconnect, tenant isolation."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import Settings
from tests.e2e.outbound.conftest import start_worker
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


def update_for(customer_id: str, **attributes: object) -> dict[str, object]:
    return {"customer": {"id": customer_id, **attributes}}


def sent_request_ids(fake: FakeS2SServer, tenant: S2STenant) -> list[str]:
    """source_request_id of every batch the fake S2S server accepted for the tenant, in order."""
    return [accepted.batch["source_request_id"] for accepted in fake.accepted(tenant.api_key)]


@pytest.mark.usefixtures("running_worker")
class TestResends:
    async def test_a_503_is_resent_and_then_delivered(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
        fake_s2s.fail(503, times=2, api_key=tenant.api_key)
        message_id = await post_ok(client, tenant, "customer-updates", update_for("c-1"))
        await wait_until(status_is(sessionmaker, message_id, "delivered"), message="delivery")
        message = await load_message(sessionmaker, message_id)
        attempts = await load_attempts(sessionmaker, message_id)
        assert [(a.status_code, a.error) for a in attempts] == [(503, "HTTP 503"), (503, "HTTP 503"), (202, None)]
        assert (message.attempts, message.last_status_code, message.last_error) == (3, 202, None)
        assert message.delivered_at is not None and message.next_attempt_at is None
        assert attempts[0].at < attempts[1].at < attempts[2].at
        # Every resend carried the same ids.
        assert sent_request_ids(fake_s2s, tenant) == [message.batch["source_request_id"]]
        bodies = {request.body for request in fake_s2s.requests(tenant.api_key)}
        assert len(bodies) == 1

    async def test_a_429_is_not_resent_before_its_retry_after(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
        fake_s2s.fail(429, times=1, retry_after="1", api_key=tenant.api_key)
        message_id = await post_ok(client, tenant, "customer-updates", update_for("c-1"))
        await wait_until(status_is(sessionmaker, message_id, "retrying"), message="the 429")
        waiting = await load_message(sessionmaker, message_id)
        first = (await load_attempts(sessionmaker, message_id))[0]
        assert (first.status_code, waiting.last_status_code) == (429, 429)
        assert waiting.next_attempt_at is not None
        assert waiting.next_attempt_at >= first.at + timedelta(seconds=1)
        await wait_until(status_is(sessionmaker, message_id, "delivered"), message="delivery")
        attempts = await load_attempts(sessionmaker, message_id)
        assert [a.status_code for a in attempts] == [429, 202]
        assert attempts[1].at >= attempts[0].at + timedelta(seconds=1)

    async def test_a_timeout_is_resent(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
        fake_s2s.hang(times=1, api_key=tenant.api_key)
        message_id = await post_ok(client, tenant, "customer-updates", update_for("c-1"))
        await wait_until(status_is(sessionmaker, message_id, "delivered"), message="delivery")
        attempts = await load_attempts(sessionmaker, message_id)
        assert [a.status_code for a in attempts] == [None, 202]
        assert attempts[0].error is not None and attempts[0].error.startswith("timeout")

    @pytest.mark.parametrize(("status", "secret_ok"), [(400, True), (401, True), (403, False), (404, True)])
    async def test_other_4xx_fail_at_once(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
        status: int,
        secret_ok: bool,
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
        if secret_ok:
            fake_s2s.fail(status, times=1, api_key=tenant.api_key)
        else:
            fake_s2s.add_account(tenant.api_key, "another-secret")  # the tenant's secret is now wrong
        failed_id = await post_ok(client, tenant, "customer-updates", update_for("c-1"))
        await wait_until(status_is(sessionmaker, failed_id, "failed"), message="failure")
        message = await load_message(sessionmaker, failed_id)
        assert (message.status, message.attempts, message.last_status_code) == ("failed", 1, status)
        assert message.next_attempt_at is None
        # A failed message does not hold the customer back: the next one goes through, and by then
        # the failed one was still sent only once.
        if not secret_ok:
            fake_s2s.add_account(tenant.api_key, tenant.api_secret)
        next_id = await post_ok(client, tenant, "customer-updates", update_for("c-1"))
        await wait_until(status_is(sessionmaker, next_id, "delivered"), message="the next message")
        assert len(await load_attempts(sessionmaker, failed_id)) == 1
        requests = fake_s2s.requests(tenant.api_key)
        assert [r.status for r in requests] == [status, 202]


class TestGivingUp:
    async def test_failed_after_the_last_resend_then_retried_by_hand(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
        admin_headers: dict[str, str],
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
        fake_s2s.fail(503, times=None, api_key=tenant.api_key)
        stop = await start_worker(settings.model_copy(update={"outbound_max_resends": 2}))
        try:
            message_id = await post_ok(client, tenant, "customer-updates", update_for("c-1"))
            await wait_until(status_is(sessionmaker, message_id, "failed"), message="giving up")
            failed = await load_message(sessionmaker, message_id)
            assert (failed.attempts, failed.last_status_code, failed.next_attempt_at) == (3, 503, None)
            assert [a.status_code for a in await load_attempts(sessionmaker, message_id)] == [503, 503, 503]

            fake_s2s.clear_faults(tenant.api_key)
            response = await client.post(
                f"/api/v1/tenants/{tenant.id}/outbound/messages/{message_id}/retry", headers=admin_headers
            )
            assert response.status_code == 200, response.text
            assert (response.json()["status"], response.json()["attempts"]) == ("queued", 0)
            await wait_until(status_is(sessionmaker, message_id, "delivered"), message="delivery after retry")
        finally:
            await stop()
        delivered = await load_message(sessionmaker, message_id)
        assert (delivered.attempts, delivered.last_status_code) == (1, 202)
        assert [a.status_code for a in await load_attempts(sessionmaker, message_id)] == [503, 503, 503, 202]


class TestRefusedConnections:
    async def test_resent_until_the_server_is_back(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        fresh_fake_s2s: FakeS2SServer,
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fresh_fake_s2s)
        fresh_fake_s2s.stop()
        stop = await start_worker(settings.model_copy(update={"outbound_max_resends": 50}))
        try:
            message_id = await post_ok(client, tenant, "customer-updates", update_for("c-1"))

            async def refused_twice() -> bool:
                return len(await load_attempts(sessionmaker, message_id)) >= 2

            await wait_until(refused_twice, message="refused attempts")
            fresh_fake_s2s.start()
            await wait_until(status_is(sessionmaker, message_id, "delivered"), message="delivery")
        finally:
            await stop()
        attempts = await load_attempts(sessionmaker, message_id)
        assert attempts[-1].status_code == 202
        refused = attempts[:-1]
        assert all(a.status_code is None and (a.error or "").startswith("connection error") for a in refused)


class TestOrdering:
    async def test_a_customers_messages_keep_their_order_while_others_go_through(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
        # Every request carrying customer A's batch fails until further notice.
        fake_s2s.fail(503, times=None, api_key=tenant.api_key, customer_id="A")
        stop = await start_worker(settings.model_copy(update={"outbound_max_resends": 50}))
        try:
            a1 = await post_ok(client, tenant, "customer-updates", update_for("A", n=1))
            await wait_until(status_is(sessionmaker, a1, "retrying"), message="A's first message to wait")
            a2 = await post_ok(client, tenant, "customer-updates", update_for("A", n=2))
            b1 = await post_ok(client, tenant, "customer-updates", update_for("B", n=1))
            b2 = await post_ok(client, tenant, "customer-updates", update_for("B", n=2))
            await wait_until(status_is(sessionmaker, b2, "delivered"), message="B's messages")

            # B went through while A's first message waits for resends; A's second was never tried.
            assert (await load_message(sessionmaker, b1)).status == "delivered"
            assert (await load_message(sessionmaker, a1)).status == "retrying"
            held = await load_message(sessionmaker, a2)
            assert (held.status, held.attempts) == ("queued", 0)

            fake_s2s.clear_faults(tenant.api_key)
            await wait_until(status_is(sessionmaker, a2, "delivered"), message="A's messages")
        finally:
            await stop()
        batches = {m.id: m.batch["source_request_id"] for m in await load_messages(sessionmaker, tenant.id)}
        order = sent_request_ids(fake_s2s, tenant)
        assert order.index(batches[a1]) < order.index(batches[a2])
        assert order.index(batches[b1]) < order.index(batches[b2])
        assert order.index(batches[b2]) < order.index(batches[a1])


@pytest.mark.usefixtures("running_worker")
class TestDisconnect:
    async def test_disconnect_cancels_waiting_messages_for_good(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_s2s: FakeS2SServer,
        admin_headers: dict[str, str],
    ) -> None:
        tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
        fake_s2s.fail(429, times=1, retry_after="60", api_key=tenant.api_key)
        waiting = await post_ok(client, tenant, "customer-updates", update_for("c-1"))
        await wait_until(status_is(sessionmaker, waiting, "retrying"), message="the 429")
        held = await post_ok(client, tenant, "customer-updates", update_for("c-1"))

        response = await client.delete(f"/api/v1/tenants/{tenant.id}/connection", headers=admin_headers)
        assert response.status_code in (200, 204), response.text
        assert [m.status for m in await load_messages(sessionmaker, tenant.id)] == ["cancelled", "cancelled"]

        # Reconnected (to another mParticle account: the first one asked for a 60 s pause, which
        # the pacing honours account-wide), the customer's next message is delivered: nothing
        # cancelled holds it back, and nothing cancelled was sent again.
        new_key, new_secret = f"{tenant.api_key}-2", f"{tenant.api_secret}-2"
        fake_s2s.add_account(new_key, new_secret)
        settings_body = {
            "api_url": fake_s2s.url,
            "api_key": new_key,
            "api_secret": new_secret,
            "development": False,
            "sync_only_configured_identifiers": False,
            "loyalty_identifier_field": "id",
            "customer_identifier_field": "customer_id",
        }
        response = await client.put(
            f"/api/v1/tenants/{tenant.id}/outbound-settings", json=settings_body, headers=admin_headers
        )
        assert response.status_code == 200, response.text
        after = await post_ok(client, tenant, "customer-updates", update_for("c-1"))
        await wait_until(status_is(sessionmaker, after, "delivered"), message="delivery after reconnecting")
        for cancelled_id, attempts in ((waiting, 1), (held, 0)):
            message = await load_message(sessionmaker, cancelled_id)
            assert (message.status, message.attempts) == ("cancelled", attempts)
        assert [r.status for r in fake_s2s.requests(tenant.api_key)] == [429]
        assert [r.status for r in fake_s2s.requests(new_key)] == [202]


@pytest.mark.usefixtures("running_worker")
class TestTenantIsolation:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        """One hang outlasts the test: with the 1 s timeout, a slow machine could deliver the healthy
        tenant between two of the hanging tenant's attempts (or the stuck one after clear_faults)."""
        return settings.model_copy(update={"outbound_timeout_seconds": 15.0})

    async def test_a_hanging_tenant_does_not_hold_up_another(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer
    ) -> None:
        hanging = await make_s2s_tenant(sessionmaker, fake_s2s)
        healthy = await make_s2s_tenant(sessionmaker, fake_s2s)
        fake_s2s.hang(times=None, api_key=hanging.api_key)
        stuck = await post_ok(client, hanging, "customer-updates", update_for("c-1"))

        async def hanging_started() -> bool:
            return ("hang-start", hanging.api_key) in fake_s2s.log()

        await wait_until(hanging_started, message="the hanging tenant's request")
        fine = await post_ok(client, healthy, "customer-updates", update_for("c-1"))
        await wait_until(status_is(sessionmaker, fine, "delivered"), message="the healthy tenant's delivery")
        fake_s2s.clear_faults(hanging.api_key)

        # The healthy tenant's batch was accepted while a request of the hanging tenant was open.
        log = fake_s2s.log()
        accepted_at = log.index(("accepted", healthy.api_key))
        open_hangs = sum(
            +1 if event == "hang-start" else -1
            for event, key in log[:accepted_at]
            if key == hanging.api_key and event in ("hang-start", "hang-end")
        )
        assert open_hangs == 1
        assert (await load_message(sessionmaker, stuck)).status in ("queued", "retrying")
