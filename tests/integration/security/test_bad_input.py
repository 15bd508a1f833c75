"""Bad input, tried on purpose: each request gets a clear 4xx in the error envelope (or is accepted
and stored safely), the process keeps answering, and one bad outbound call never takes the other
calls of its group commit down with it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.factories import make_tenant
from tests.inbound_helpers import FIREHOSE_PATH, sample

MIB = 1024 * 1024


def _registration(**fields: object) -> bytes:
    return json.dumps({**sample("ModuleRegistrationRequest.json"), **fields}).encode()


async def _chunks(total_bytes: int, chunk_bytes: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body sent chunked (no Content-Length): `{"pad":"xxx…` until `total_bytes`."""
    yield b'{"pad":"'
    sent = 8
    while sent < total_bytes:
        yield b"x" * chunk_bytes
        sent += chunk_bytes


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"], body


FIREHOSE_REFUSALS = [
    ("empty body", b"", 400, "MALFORMED_JSON"),
    ("invalid UTF-8", b'{"type":"\xff\xfe"}', 400, "MALFORMED_JSON"),
    ("lone surrogate escape", b'{"type":"\\ud800"}', 400, "MALFORMED_JSON"),
    ("nested 100k deep", b"[" * 100_000 + b"]" * 100_000, 400, "MALFORMED_JSON"),
    ("number beyond a double", _registration().replace(b'"id"', b'"big": 1e400, "id"', 1), 400, "MALFORMED_JSON"),
    ("integer beyond 64 bits as a timestamp", _registration(timestamp_ms=2**80), 400, "INVALID_MESSAGE"),
    ("a JSON array", b"[]", 400, "INVALID_MESSAGE"),
    ("a JSON string", b'"event_processing_request"', 400, "INVALID_MESSAGE"),
    ("a JSON number", b"1", 400, "INVALID_MESSAGE"),
    ("JSON null", b"null", 400, "INVALID_MESSAGE"),
    ("a NUL in the type", _registration(type="module_registration_request\x00"), 400, "UNKNOWN_MESSAGE_TYPE"),
    ("an id of 10k characters", _registration(id="i" * 10_000), 400, "INVALID_MESSAGE"),
]


@pytest.mark.parametrize(
    ("body", "status", "code"), [c[1:] for c in FIREHOSE_REFUSALS], ids=[c[0] for c in FIREHOSE_REFUSALS]
)
async def test_firehose_refuses_bad_bodies_clearly(client, body: bytes, status: int, code: str) -> None:
    response = await client.post(FIREHOSE_PATH, content=body)

    assert_refused(response, status, code)
    still_up = await client.post(FIREHOSE_PATH, content=_registration())
    assert still_up.status_code == 200


async def test_firehose_duplicate_keys_take_the_last_value(client) -> None:
    body = b'{"type":"event_processing_request","type":"module_registration_request","id":"dup-1"}'
    response = await client.post(FIREHOSE_PATH, content=body)

    assert response.status_code == 200
    assert response.json()["type"] == "module_registration_response"


async def test_firehose_accepts_nul_characters_inside_values(app, client, sessionmaker) -> None:
    tenant = await make_tenant(sessionmaker)
    await app.state.proxy.tenant_configs.refresh()
    message = sample("EventProcessingRequest_ios.json", tenant)
    message["events"][0].setdefault("data", {})["custom_attributes"] = {"note\x00": "a\x00b"}
    message["user_attributes"]["$FirstName"] = "Bri\x00an"

    response = await client.post(FIREHOSE_PATH, content=json.dumps(message).encode())

    assert response.status_code == 200, response.text  # the worker stores it with U+FFFD (shared/mapping/sanitize.py)
    assert response.json()["id"] == message["id"]


async def test_firehose_bodies_over_the_limit_are_413_declared_or_chunked(client, settings) -> None:
    limit = settings.max_request_bytes
    declared = await client.post(FIREHOSE_PATH, content=b"x" * (limit + 1))
    chunked = await client.post(FIREHOSE_PATH, content=_chunks(limit + MIB))

    assert_refused(declared, 413, "PAYLOAD_TOO_LARGE")
    assert_refused(chunked, 413, "PAYLOAD_TOO_LARGE")


# --- the loyalty engine's outbound API ------------------------------------------------------------


@pytest.fixture
async def engine_tenant(sessionmaker):
    return await make_tenant(sessionmaker, sync_fields=[{"loyalty_field": "tier", "remote_field": "tier"}])


def _outbound(tenant_id: str, path: str) -> str:
    return f"/api/v1/tenants/{tenant_id}/outbound/{path}"


DEEP = b"[" * 100_000 + b"]" * 100_000
OUTBOUND_REFUSALS = [
    ("invalid UTF-8", b'{"customer":{"id":"\xff"}}', 422, "VALIDATION_FAILED"),
    ("nested 100k deep", b'{"customer":{"id":"c","x":' + DEEP + b"}}", 422, "VALIDATION_FAILED"),
    ("a JSON array", b"[]", 422, "VALIDATION_FAILED"),
    ("JSON null", b"null", 422, "VALIDATION_FAILED"),
    ("a NUL in a synced attribute", b'{"customer":{"id":"c-1","tier":"gold\\u0000"}}', 422, "VALIDATION_FAILED"),
    # Stored safely instead: PostgreSQL's numeric holds any integer; an unmapped name is not sent.
    ("an integer id beyond 64 bits", b'{"customer":{"id":' + str(2**80).encode() + b"}}", 202, None),
    ("a NUL in an unsynced attribute name", b'{"customer":{"id":"c-1","ti\\u0000er":"gold"}}', 202, None),
]


@pytest.mark.parametrize(
    ("body", "status", "code"), [c[1:] for c in OUTBOUND_REFUSALS], ids=[c[0] for c in OUTBOUND_REFUSALS]
)
async def test_outbound_api_refuses_bad_bodies_clearly(client, engine_tenant, body, status, code) -> None:
    headers = {"Authorization": f"Bearer {engine_tenant.engine_api_key}", "Content-Type": "application/json"}
    response = await client.post(_outbound(engine_tenant.id, "customer-updates"), content=body, headers=headers)

    if code is None:
        assert response.status_code == status, response.text
    else:
        assert_refused(response, status, code)
    fine = await client.post(
        _outbound(engine_tenant.id, "customer-updates"), json={"customer": {"id": "c-2"}}, headers=headers
    )
    assert fine.status_code == 202, fine.text


async def test_one_bad_outbound_call_does_not_fail_its_neighbours(client, engine_tenant) -> None:
    headers = {"Authorization": f"Bearer {engine_tenant.engine_api_key}"}
    url = _outbound(engine_tenant.id, "events")
    good = [{"customer": {"id": f"c-{n}"}, "action": "unmapped", "data": {"n": n}} for n in range(5)]
    bad = {"customer": {"id": "c-bad", "tier": "x\x00"}, "action": "unmapped", "data": {}}
    customer_updates = _outbound(engine_tenant.id, "customer-updates")

    responses = await asyncio.gather(
        *(client.post(customer_updates, json={"customer": call["customer"]}, headers=headers) for call in good),
        client.post(customer_updates, json={"customer": bad["customer"]}, headers=headers),
        client.post(url, json=good[0], headers=headers),
    )

    assert [r.status_code for r in responses[:5]] == [202] * 5, [r.text for r in responses]
    assert_refused(responses[5], 422, "VALIDATION_FAILED")
    assert "NUL" in responses[5].json()["error"]["message"]
    assert responses[6].status_code == 202


async def test_outbound_bodies_over_the_limit_are_413(client, engine_tenant) -> None:
    headers = {"Authorization": f"Bearer {engine_tenant.engine_api_key}"}
    response = await client.post(
        _outbound(engine_tenant.id, "customer-updates"), content=_chunks(2 * MIB), headers=headers
    )
    assert_refused(response, 413, "PAYLOAD_TOO_LARGE")


# --- the admin API ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"id":"t-x","name":"\xff"}', 422, "VALIDATION_FAILED"),
        (b'{"id":"t-x","name":"a\\u0000b"}', 422, "VALIDATION_FAILED"),
        (b'{"id":"t-x","name":' + b"[" * 100_000 + b"]" * 100_000 + b"}", 422, "VALIDATION_FAILED"),
        (b"[]", 422, "VALIDATION_FAILED"),
    ],
    ids=["invalid UTF-8", "NUL", "nested 100k deep", "array"],
)
async def test_admin_api_refuses_bad_bodies_clearly(client, admin_headers, body, status, code) -> None:
    response = await client.post(
        "/api/v1/tenants", content=body, headers={**admin_headers, "Content-Type": "application/json"}
    )
    assert_refused(response, status, code)


async def test_admin_bodies_over_the_limit_are_413_declared_or_chunked(client, admin_headers) -> None:
    from proxy.request_body import ADMIN_MAX_BODY_BYTES

    url = "/api/v1/tenants"
    declared = await client.post(url, content=b"x" * (ADMIN_MAX_BODY_BYTES + 1), headers=admin_headers)
    chunked = await client.post(url, content=_chunks(ADMIN_MAX_BODY_BYTES + MIB), headers=admin_headers)

    assert_refused(declared, 413, "PAYLOAD_TOO_LARGE")
    assert_refused(chunked, 413, "PAYLOAD_TOO_LARGE")
