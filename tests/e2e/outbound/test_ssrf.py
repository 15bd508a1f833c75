"""The worker refuses to send to a destination the SSRF policy does not allow: the message fails at
once with a clear `last_error`, and nothing is sent (worker/outbound/safe_transport.py)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.e2e.outbound.helpers import load_message, make_s2s_tenant, post_ok, status_is, wait_until
from tests.fakes.s2s_server import FakeS2SServer


@pytest.mark.usefixtures("running_worker")
@pytest.mark.parametrize(
    ("api_url", "reason"),
    [
        # Saved before OUTBOUND_ALLOWED_HOSTS lost it (tests allow only loopback names).
        ("http://10.255.255.1:9", "host '10.255.255.1' is not allowed"),
        ("http://s2s.mparticle.com", "must be https on the default port"),
    ],
)
async def test_a_refused_destination_fails_the_message_at_once(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    fake_s2s: FakeS2SServer,
    api_url: str,
    reason: str,
) -> None:
    tenant = await make_s2s_tenant(sessionmaker, fake_s2s, outbound={"api_url": api_url})

    message_id = await post_ok(client, tenant, "customer-updates", {"customer": {"id": "c-1"}})
    await wait_until(status_is(sessionmaker, message_id, "failed"), message="the refusal")

    message = await load_message(sessionmaker, message_id)
    assert (message.attempts, message.last_status_code, message.next_attempt_at) == (1, None, None)
    assert message.last_error is not None
    assert message.last_error.startswith("destination refused: ") and reason in message.last_error
    assert fake_s2s.requests(tenant.api_key) == []
