"""The SSRF guard on `api_url`: refused at save time (422, no DNS), and at send time by the worker's
transport (vetted addresses, no redirects, capped response bodies) against a real local HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from shared.settings import Settings
from tests.integration.admin_helpers import OUTBOUND_BODY, assert_error, create_tenant
from worker.outbound.mparticle_client import Delivered, MParticleClient, Permanent, S2SDestination
from worker.outbound.safe_transport import MAX_RESPONSE_BODY_BYTES, create_s2s_client

BATCH = b'{"events":[],"user_identities":{"customer_id":"c-1"}}'


# --- save time ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_url", "reason"),
    [
        ("http://s2s.mparticle.com", "must be https on the default port"),
        ("https://s2s.mparticle.com:8443", "must be https on the default port"),
        ("https://169.254.169.254", "is not allowed"),
        ("https://10.0.0.1", "is not allowed"),
        ("https://[::1]", "is not allowed"),
        ("https://s2s.mparticle.com.attacker.test", "is not allowed"),
        ("https://user:pw@s2s.mparticle.com", "must not carry credentials"),
        ("http://127.0.0.2:8080", "is not allowed"),
    ],
)
async def test_a_disallowed_api_url_is_refused_when_saved(client, admin_headers, api_url, reason) -> None:
    tenant = await create_tenant(client, admin_headers)
    response = await client.put(
        f"/api/v1/tenants/{tenant['id']}/outbound-settings",
        json={**OUTBOUND_BODY, "api_url": api_url},
        headers=admin_headers,
    )
    assert_error(response, 422, "VALIDATION_FAILED")
    assert reason in response.json()["error"]["message"]
    missing = await client.get(f"/api/v1/tenants/{tenant['id']}/outbound-settings", headers=admin_headers)
    assert missing.status_code == 404  # nothing saved


@pytest.mark.parametrize("api_url", ["https://s2s.au1.mparticle.com/v2", "http://127.0.0.1:9", "http://localhost:1"])
async def test_mparticle_and_allow_listed_hosts_are_saved(client, admin_headers, api_url) -> None:
    tenant = await create_tenant(client, admin_headers)
    response = await client.put(
        f"/api/v1/tenants/{tenant['id']}/outbound-settings",
        json={**OUTBOUND_BODY, "api_url": api_url},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["api_url"] == api_url


@pytest.mark.parametrize(
    ("pod", "api_url"),
    [
        ("US1", "https://s2s.mparticle.com"),
        ("US2", "https://s2s.us2.mparticle.com"),
        ("EU1", "https://s2s.eu1.mparticle.com"),
        ("AU1", "https://s2s.au1.mparticle.com"),
    ],
)
async def test_a_pod_fills_in_its_s2s_host_and_shows_in_get(client, admin_headers, pod, api_url) -> None:
    tenant = await create_tenant(client, admin_headers)
    body = {key: value for key, value in OUTBOUND_BODY.items() if key != "api_url"} | {"pod": pod}
    put = await client.put(f"/api/v1/tenants/{tenant['id']}/outbound-settings", json=body, headers=admin_headers)
    get = await client.get(f"/api/v1/tenants/{tenant['id']}/outbound-settings", headers=admin_headers)

    assert put.status_code == 200, put.text
    assert (get.json()["api_url"], get.json()["pod"]) == (api_url, pod)
    resent = await client.put(  # the GET body sent back as is is accepted
        f"/api/v1/tenants/{tenant['id']}/outbound-settings", json=get.json(), headers=admin_headers
    )
    assert resent.status_code == 200, resent.text


async def test_an_unknown_pod_is_refused(client, admin_headers) -> None:
    tenant = await create_tenant(client, admin_headers)
    response = await client.put(
        f"/api/v1/tenants/{tenant['id']}/outbound-settings", json={**OUTBOUND_BODY, "pod": "EU2"}, headers=admin_headers
    )
    assert_error(response, 422, "VALIDATION_FAILED")
    assert "pod" in response.text


async def test_a_pod_wins_over_the_api_url_sent_with_it(client, admin_headers) -> None:
    tenant = await create_tenant(client, admin_headers)
    body = {**OUTBOUND_BODY, "api_url": "https://s2s.us2.mparticle.com", "pod": "EU1"}
    response = await client.put(f"/api/v1/tenants/{tenant['id']}/outbound-settings", json=body, headers=admin_headers)
    assert response.status_code == 200, response.text
    assert (response.json()["api_url"], response.json()["pod"]) == ("https://s2s.eu1.mparticle.com", "EU1")


async def test_a_custom_url_shows_no_pod(client, admin_headers) -> None:
    tenant = await create_tenant(client, admin_headers)
    response = await client.put(
        f"/api/v1/tenants/{tenant['id']}/outbound-settings",
        json={**OUTBOUND_BODY, "api_url": "http://127.0.0.1:9"},
        headers=admin_headers,
    )
    assert response.json()["pod"] is None


# --- send time: a real local HTTP server ------------------------------------------------------------


@dataclass
class LocalServer:
    """An HTTP/1.1 server on 127.0.0.1 answering by path: `/v2/events` 202, `/redirect/...` 307 to
    it, `/big/...` 400 with a 1 MiB body. Records (path, Host header) of every request."""

    port: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines if line)}
        await reader.readexactly(int(headers.get("content-length", "0")))
        path = request_line.split(" ")[1]
        self.seen.append((path, headers.get("host", "")))
        if path.startswith("/redirect"):
            status, extra, body = "307 Temporary Redirect", f"Location: http://127.0.0.1:{self.port}/v2/events\r\n", b""
        elif path.startswith("/big"):
            status, extra, body = "400 Bad Request", "", b"x" * (1024 * 1024)
        else:
            status, extra, body = "202 Accepted", "", b"{}"
        writer.write(
            f"HTTP/1.1 {status}\r\n{extra}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def local_server() -> AsyncIterator[LocalServer]:
    server = LocalServer()
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listening.close()
        await listening.wait_closed()


def _resolving_everything_to(address: str):
    async def resolve(host: str, port: int) -> list[str]:
        return [address]

    return resolve


async def _send(settings: Settings, allowed: str, api_url: str, resolve=None) -> tuple[object, MParticleClient]:
    configured = settings.model_copy(update={"outbound_allowed_hosts": allowed})
    http = create_s2s_client(configured, resolve=resolve) if resolve else create_s2s_client(configured)
    async with http:
        client = MParticleClient(http, timeout_seconds=5)
        return await client.send(S2SDestination(api_url, "key", "secret"), [BATCH]), client


async def test_an_mparticle_name_resolving_to_a_private_address_is_refused(settings, local_server) -> None:
    outcome, _ = await _send(settings, "", "https://s2s.mparticle.com", _resolving_everything_to("127.0.0.1"))

    assert isinstance(outcome, Permanent)
    assert outcome.error.startswith("destination refused: s2s.mparticle.com resolves to 127.0.0.1")
    assert local_server.seen == []


async def test_a_host_no_longer_allowed_is_refused_at_send_time(settings, local_server) -> None:
    outcome, _ = await _send(settings, "", f"http://127.0.0.1:{local_server.port}")

    assert isinstance(outcome, Permanent)
    assert "destination refused: host '127.0.0.1' is not allowed" in outcome.error
    assert local_server.seen == []


async def test_an_allowed_name_connects_to_its_vetted_address_keeping_the_name(settings, local_server) -> None:
    url = f"http://api.bridge.test:{local_server.port}"
    outcome, _ = await _send(settings, "*.bridge.test", url, _resolving_everything_to("127.0.0.1"))

    assert outcome == Delivered(202)
    assert local_server.seen == [("/v2/events", f"api.bridge.test:{local_server.port}")]


async def test_redirects_are_not_followed(settings, local_server) -> None:
    outcome, _ = await _send(settings, "127.0.0.1", f"http://127.0.0.1:{local_server.port}/redirect")

    assert isinstance(outcome, Permanent) and outcome.status_code == 307
    assert [path for path, _ in local_server.seen] == ["/redirect/v2/events"]


async def test_a_response_body_is_read_up_to_the_cap(settings, local_server) -> None:
    configured = settings.model_copy(update={"outbound_allowed_hosts": "127.0.0.1"})
    async with create_s2s_client(configured) as http:
        assert http.follow_redirects is False
        response = await http.post(f"http://127.0.0.1:{local_server.port}/big/v2/events", content=BATCH)

    assert response.status_code == 400
    assert len(response.content) == MAX_RESPONSE_BODY_BYTES


async def test_an_unresolvable_name_is_a_retryable_connection_error(settings) -> None:
    async def fail(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    outcome, _ = await _send(settings, "", "https://s2s.mparticle.com", fail)

    assert not isinstance(outcome, (Delivered, Permanent))
    assert "cannot resolve s2s.mparticle.com" in outcome.error
