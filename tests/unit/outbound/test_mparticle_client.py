"""MParticleClient against respx-faked S2S answers: request shape, URL joining, outcome classification."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import orjson
import pytest
import respx

from worker.outbound.mparticle_client import (
    Delivered,
    DeliveryOutcome,
    MParticleClient,
    Permanent,
    Retryable,
    S2SDestination,
    parse_retry_after,
    s2s_url,
)

POD = "https://s2s.example.test"
DESTINATION = S2SDestination(api_url=POD, api_key="example-api-key", api_secret="example-api-secret")
BATCH = orjson.dumps({"environment": "production", "user_identities": {"customer_id": "c1"}})
NOW = 1_700_000_000.0


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def make_client(http: httpx.AsyncClient, timeout_seconds: float = 5.0) -> MParticleClient:
    return MParticleClient(http, timeout_seconds=timeout_seconds, clock=lambda: NOW)


class TestRequestShape:
    @respx.mock
    async def test_single_batch_goes_to_events_with_basic_auth(self, http: httpx.AsyncClient) -> None:
        route = respx.post(f"{POD}/v2/events").respond(202)
        outcome = await make_client(http).send(DESTINATION, [BATCH])
        assert outcome == Delivered(202)
        request = route.calls.last.request
        # The docs' worked example of the Basic header.
        assert request.headers["authorization"] == "Basic ZXhhbXBsZS1hcGkta2V5OmV4YW1wbGUtYXBpLXNlY3JldA=="
        assert request.headers["content-type"] == "application/json"
        assert orjson.loads(request.content) == orjson.loads(BATCH)

    @respx.mock
    async def test_several_batches_go_to_bulkevents_as_an_array(self, http: httpx.AsyncClient) -> None:
        other = orjson.dumps({"environment": "production", "user_identities": {"customer_id": "c2"}})
        route = respx.post(f"{POD}/v2/bulkevents").respond(202)
        assert await make_client(http).send(DESTINATION, [BATCH, other]) == Delivered(202)
        assert orjson.loads(route.calls.last.request.content) == [orjson.loads(BATCH), orjson.loads(other)]

    @respx.mock
    async def test_credentials_are_the_tenants(self, http: httpx.AsyncClient) -> None:
        route = respx.post(f"{POD}/v2/events").respond(202)
        await make_client(http).send(S2SDestination(POD, "k:ey", "s3cr#t"), [BATCH])
        expected = base64.b64encode(b"k:ey:s3cr#t").decode()
        assert route.calls.last.request.headers["authorization"] == f"Basic {expected}"

    async def test_nothing_to_send_is_a_programming_error(self, http: httpx.AsyncClient) -> None:
        with pytest.raises(ValueError):
            await make_client(http).send(DESTINATION, [])


class TestUrlJoining:
    @pytest.mark.parametrize(
        ("api_url", "expected"),
        [
            ("https://s2s.mparticle.com", "https://s2s.mparticle.com/v2/events"),
            ("https://s2s.mparticle.com/", "https://s2s.mparticle.com/v2/events"),
            ("https://s2s.mparticle.com/v2", "https://s2s.mparticle.com/v2/events"),
            ("https://s2s.mparticle.com/v2/", "https://s2s.mparticle.com/v2/events"),
            ("https://inbound.mparticle.com/s2s/v2", "https://inbound.mparticle.com/s2s/v2/events"),
            ("https://inbound.mparticle.com/s2s/v2/events", "https://inbound.mparticle.com/s2s/v2/events"),
            ("http://127.0.0.1:8123", "http://127.0.0.1:8123/v2/events"),
        ],
    )
    def test_events_url(self, api_url: str, expected: str) -> None:
        assert s2s_url(api_url, "/v2/events") == expected

    @pytest.mark.parametrize("api_url", [POD, f"{POD}/v2", f"{POD}/v2/"])
    @respx.mock
    async def test_requests_reach_the_joined_url(self, http: httpx.AsyncClient, api_url: str) -> None:
        route = respx.post(f"{POD}/v2/events").respond(202)
        await make_client(http).send(S2SDestination(api_url, "k", "s"), [BATCH])
        assert route.call_count == 1


class TestClassification:
    @pytest.mark.parametrize(
        ("status", "headers", "body", "expected"),
        [
            (202, {}, b"", Delivered(202)),
            (200, {}, b"", Delivered(200)),
            (
                400,
                {},
                b'{"errors":[{"code":"BAD_REQUEST","message":"Required event field \\"event_type\\" is missing"}]}',
                Permanent(400, 'HTTP 400: BAD_REQUEST: Required event field "event_type" is missing'),
            ),
            (401, {}, b"", Permanent(401, "HTTP 401")),
            (403, {}, b"forbidden", Permanent(403, "HTTP 403: forbidden")),
            (404, {}, b"", Permanent(404, "HTTP 404")),
            (408, {}, b"", Permanent(408, "HTTP 408")),
            (301, {"location": "https://elsewhere"}, b"", Permanent(301, "HTTP 301")),
            (429, {"retry-after": "30"}, b"", Retryable(429, "HTTP 429", 30.0)),
            (429, {"retry-after": "0"}, b"", Retryable(429, "HTTP 429", 0.0)),
            (429, {}, b"", Retryable(429, "HTTP 429", None)),
            (429, {"retry-after": "soon"}, b"", Retryable(429, "HTTP 429", None)),
            (500, {}, b"boom", Retryable(500, "HTTP 500: boom")),
            (502, {}, b"", Retryable(502, "HTTP 502")),
            (503, {}, b"", Retryable(503, "HTTP 503")),
        ],
    )
    @respx.mock
    async def test_status_codes(
        self,
        http: httpx.AsyncClient,
        status: int,
        headers: dict[str, str],
        body: bytes,
        expected: DeliveryOutcome,
    ) -> None:
        respx.post(f"{POD}/v2/events").respond(status, headers=headers, content=body)
        assert await make_client(http).send(DESTINATION, [BATCH]) == expected

    @respx.mock
    async def test_retry_after_as_http_date(self, http: httpx.AsyncClient) -> None:
        when = datetime.fromtimestamp(NOW, tz=UTC) + timedelta(seconds=120)
        respx.post(f"{POD}/v2/events").respond(429, headers={"retry-after": format_datetime(when, usegmt=True)})
        outcome = await make_client(http).send(DESTINATION, [BATCH])
        assert isinstance(outcome, Retryable)
        assert outcome.retry_after_seconds == pytest.approx(120.0)

    @pytest.mark.parametrize(
        "error",
        [
            httpx.ReadTimeout("read timed out"),
            httpx.ConnectTimeout("connect timed out"),
            httpx.PoolTimeout("pool timed out"),
        ],
    )
    @respx.mock
    async def test_timeouts_are_retryable(self, http: httpx.AsyncClient, error: Exception) -> None:
        respx.post(f"{POD}/v2/events").mock(side_effect=error)
        outcome = await make_client(http, timeout_seconds=1.5).send(DESTINATION, [BATCH])
        assert outcome == Retryable(None, "timeout: no answer within 1.5s")

    @respx.mock
    async def test_total_timeout_covers_a_slow_server(self, http: httpx.AsyncClient) -> None:
        async def never_answers(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(30)
            return httpx.Response(202)

        respx.post(f"{POD}/v2/events").mock(side_effect=never_answers)
        outcome = await make_client(http, timeout_seconds=0.05).send(DESTINATION, [BATCH])
        assert outcome == Retryable(None, "timeout: no answer within 0.05s")

    @pytest.mark.parametrize(
        "error",
        [
            httpx.ConnectError("[Errno 111] Connection refused"),
            httpx.ReadError("connection reset by peer"),
            httpx.RemoteProtocolError("server disconnected without sending a response"),
        ],
    )
    @respx.mock
    async def test_connection_errors_are_retryable(self, http: httpx.AsyncClient, error: Exception) -> None:
        respx.post(f"{POD}/v2/events").mock(side_effect=error)
        outcome = await make_client(http).send(DESTINATION, [BATCH])
        assert outcome == Retryable(None, f"connection error: {error}")

    @pytest.mark.parametrize("api_url", ["ftp://s2s.example.test", "s2s.example.test"])
    async def test_an_unusable_api_url_is_permanent(self, http: httpx.AsyncClient, api_url: str) -> None:
        outcome = await make_client(http).send(S2SDestination(api_url, "k", "s"), [BATCH])
        assert isinstance(outcome, Permanent)
        assert outcome.status_code is None
        assert outcome.error.startswith("invalid api_url")


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (None, None),
            ("", None),
            ("5", 5.0),
            (" 12 ", 12.0),
            ("1.5", 1.5),
            ("-3", None),
            ("later", None),
            ("Tue, 14 Nov 2023 22:13:50 GMT", 30.0),
            ("Tue, 14 Nov 2023 22:13:00 GMT", 0.0),
        ],
    )
    def test_values(self, value: str | None, expected: float | None) -> None:
        assert parse_retry_after(value, NOW) == expected
