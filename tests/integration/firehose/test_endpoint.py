"""The Firehose endpoint against real Redis and PostgreSQL: answers, authentication, limits, the
queue hand-off (what lands in Redis, with which priority) and what gets logged when it fails."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import delete, select

from proxy.app import create_app
from shared.models import SpooledRequest
from shared.queues.firehose import FirehoseQueue, parse_job_value
from shared.queues.jobs import MAX_PRIORITY, PRIORITY_STEP_MS, UNMAPPED_PRIORITY, firehose_job_id
from shared.settings import Settings
from tests.factories import make_tenant
from tests.inbound_helpers import (
    account,
    custom_event,
    deep_copy,
    event_request,
    logged_errors,
    logged_payload,
    membership_request,
    post_firehose,
    refresh_configs,
    sample,
    subscription_request,
)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.require_redis_url())
    yield client
    # Leave nothing behind in the shared Redis: this test's Firehose queue and its jobs.
    queue = FirehoseQueue(client, settings.queue_name)
    members = await client.zrange(queue.pending_key, 0, -1)
    await client.delete(queue.pending_key, *(queue.job_prefix + member.decode() for member in members))
    await client.aclose()


async def queued_jobs(redis: Redis, settings: Settings) -> list[tuple[str, float]]:
    """The Firehose queue in dequeue order: (member, score)."""
    pending = FirehoseQueue(redis, settings.queue_name).pending_key
    return [(member.decode(), score) for member, score in await redis.zrange(pending, 0, -1, withscores=True)]


async def job_args(redis: Redis, settings: Settings, member: str) -> tuple[str, str, int]:
    """What a queued request carries: (tenant_id, body, received_at_ms)."""
    value = await redis.get(FirehoseQueue(redis, settings.queue_name).job_prefix + member)
    assert value is not None, "the request's job is stored"
    _, tenant_id, received_at_ms, body, _ = parse_job_value(value.decode())
    return tenant_id, body, received_at_ms


@pytest.fixture
async def tenant(app, sessionmaker):
    created = await make_tenant(
        sessionmaker,
        inbound_mappings=[
            {"loyalty_event": "purchase", "event_type": "product_action", "event_name": "purchase", "priority": 7},
            {"loyalty_event": "redeem", "event_type": "custom_event", "event_name": "redeem", "priority": 40},
        ],
    )
    await refresh_configs(app)
    return created


async def test_registration_needs_no_authentication(client) -> None:
    response = await post_firehose(client, sample("ModuleRegistrationRequest.json", fresh_id=False))
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "module_registration_response"
    assert body["id"] == "438b0f74-8656-4f87-93c7-c9f9ac8a5544"
    assert body["firehose_version"] == "3.2.0"
    assert isinstance(body["timestamp_ms"], int)
    settings = body["event_processing_registration"]["account_settings"]
    assert [setting["id"] for setting in settings] == ["loyaltyEnvironment", "authenticationToken"]
    assert body["audience_processing_registration"]["account_settings"] == settings


@pytest.mark.parametrize(
    ("name", "response_type"),
    [
        ("EventProcessingRequest_android.json", "event_processing_response"),
        ("EventProcessingRequest_ios.json", "event_processing_response"),
        ("AudienceSubscriptionRequest.json", "audience_subscription_response"),
        ("AudienceMembershipChangeRequest.json", "audience_membership_change_response"),
        ("DsrProcessingRequest.json", "dsr_processing_response"),
    ],
)
async def test_samples_are_accepted_and_enqueued(client, tenant, redis, settings, name, response_type) -> None:
    payload = sample(name, tenant)
    response = await post_firehose(client, payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == response_type
    assert body["id"] == payload["id"]
    assert body["firehose_version"] == "3.2.0"
    assert isinstance(body["timestamp_ms"], int)

    job_id = firehose_job_id(settings.queue_name, tenant.id, payload["id"])
    assert [member for member, _ in await queued_jobs(redis, settings)] == [job_id]
    tenant_id, body_text, received_at_ms = await job_args(redis, settings, job_id)
    assert tenant_id == tenant.id
    assert isinstance(received_at_ms, int)
    # The job carries the message, with the tenant's token blanked out.
    assert tenant.inbound_token not in body_text
    carried = json.loads(body_text)
    assert carried["account"]["account_settings"]["authenticationToken"] == "[REDACTED]"
    del carried["account"], payload["account"]
    assert carried == payload


async def test_priority_is_the_lowest_matching_mapping(client, tenant, redis, settings) -> None:
    purchase = {"type": "product_action", "id": "e1", "timestamp_ms": 1714592744066, "action": "purchase"}
    requests = {
        "unmapped": event_request(tenant, {"type": "session_start", "id": "e0"}),
        "redeem-only": event_request(tenant, custom_event("redeem")),
        "both": event_request(tenant, custom_event("redeem"), purchase),
        "audience": membership_request(tenant, {"mpid": "1", "audiences": []}),
    }
    for payload in requests.values():
        assert (await post_firehose(client, payload)).status_code == 200
    scores = dict(await queued_jobs(redis, settings))

    def priority_of(key: str) -> int:
        score = scores[firehose_job_id(settings.queue_name, tenant.id, requests[key]["id"])]
        # The score is the enqueue time backdated by one PRIORITY_STEP_MS per level below MAX_PRIORITY.
        return MAX_PRIORITY - round((time.time() * 1000 - score) / PRIORITY_STEP_MS)

    assert priority_of("both") == 7
    assert priority_of("redeem-only") == 40
    assert priority_of("unmapped") == UNMAPPED_PRIORITY
    assert priority_of("audience") == UNMAPPED_PRIORITY
    assert [member for member, _ in await queued_jobs(redis, settings)] == [
        firehose_job_id(settings.queue_name, tenant.id, requests[key]["id"])
        for key in ("both", "redeem-only", "unmapped", "audience")
    ]


async def test_same_request_id_is_queued_once(client, tenant, redis, settings) -> None:
    payload = event_request(tenant, custom_event("redeem"))
    first = await post_firehose(client, payload)
    second = await post_firehose(client, payload)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["id"] == payload["id"]
    assert len(await queued_jobs(redis, settings)) == 1


@pytest.mark.parametrize(
    "make_payload",
    [
        pytest.param(lambda t: event_request(t), id="event-request-without-events"),
        pytest.param(lambda t: {k: v for k, v in event_request(t).items() if k != "events"}, id="events-missing"),
        pytest.param(lambda t: membership_request(t), id="membership-without-profiles"),
    ],
)
async def test_verification_calls_are_answered_and_enqueue_nothing(
    client, tenant, redis, settings, make_payload
) -> None:
    payload = make_payload(tenant)
    response = await post_firehose(client, payload)
    assert response.status_code == 200
    assert response.json()["id"] == payload["id"]
    assert await queued_jobs(redis, settings) == []


async def test_verification_call_is_still_authenticated(client, tenant) -> None:
    payload = event_request(tenant)
    payload["account"] = account(tenant, "wrong-token")
    response = await post_firehose(client, payload)
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b"{not json", "MALFORMED_JSON", id="malformed"),
        pytest.param(b"", "MALFORMED_JSON", id="empty-body"),
        pytest.param(b"\xff\xfe{}", "MALFORMED_JSON", id="not-utf8"),
        pytest.param(b"[1, 2]", "INVALID_MESSAGE", id="not-an-object"),
        pytest.param(b'{"id": "x"}', "INVALID_MESSAGE", id="no-type"),
        pytest.param(b'{"type": 5, "id": "x"}', "INVALID_MESSAGE", id="numeric-type"),
        pytest.param(b'{"type": "module_registration_request"}', "INVALID_MESSAGE", id="registration-without-id"),
        pytest.param(b'{"type": "event_processing_response", "id": "x"}', "UNKNOWN_MESSAGE_TYPE", id="a-response"),
        pytest.param(b'{"type": "brand_new_request", "id": "x"}', "UNKNOWN_MESSAGE_TYPE", id="unknown-type"),
    ],
)
async def test_bad_requests_are_400(client, body, code) -> None:
    response = await post_firehose(client, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


async def test_invalid_message_of_a_known_tenant_is_logged(client, tenant, sessionmaker, redis, settings) -> None:
    # An event's name is what mappings match on: the proxy validates it (the rest of an event is
    # validated by the worker: tests/integration/inbound/test_failures.py).
    payload = event_request(tenant, custom_event("redeem"), custom_event(["not", "a", "name"]))
    response = await post_firehose(client, payload)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_MESSAGE"
    assert "events.1.name" in response.json()["error"]["message"]
    unknown_type = deep_copy(payload) | {"type": "brand_new_request"}
    assert (await post_firehose(client, unknown_type)).status_code == 400

    entries = await logged_errors(sessionmaker, tenant.id)
    assert [(e.source, e.error_code, e.request_id) for e in entries] == [
        ("proxy_request", "INVALID_MESSAGE", payload["id"]),
        ("proxy_request", "UNKNOWN_MESSAGE_TYPE", payload["id"]),
    ]
    assert logged_payload(entries[0])["account"]["account_settings"]["authenticationToken"] == "[REDACTED]"
    assert logged_payload(entries[0])["events"] == payload["events"]
    assert await queued_jobs(redis, settings) == []


@pytest.mark.parametrize(
    ("change", "code", "logged"),
    [
        pytest.param(lambda p, t: p.pop("account"), "UNAUTHORIZED", False, id="no-account"),
        pytest.param(lambda p, t: p["account"].pop("account_settings"), "UNAUTHORIZED", False, id="no-settings"),
        pytest.param(
            lambda p, t: p["account"]["account_settings"].pop("loyaltyEnvironment"), "UNAUTHORIZED", False, id="no-env"
        ),
        pytest.param(
            lambda p, t: p["account"]["account_settings"].update(loyaltyEnvironment="t-nonexistent"),
            "UNKNOWN_TENANT",
            False,
            id="unknown-tenant",
        ),
        pytest.param(
            lambda p, t: p["account"]["account_settings"].pop("authenticationToken"),
            "INVALID_TOKEN",
            True,
            id="no-token",
        ),
        pytest.param(
            lambda p, t: p["account"]["account_settings"].update(authenticationToken=t.inbound_token + "x"),
            "INVALID_TOKEN",
            True,
            id="bad-token",
        ),
        pytest.param(
            lambda p, t: p["account"]["account_settings"].update(authenticationToken=""),
            "INVALID_TOKEN",
            True,
            id="empty-token",
        ),
    ],
)
async def test_unauthenticated_requests_are_401(
    client, tenant, sessionmaker, redis, settings, change, code, logged
) -> None:
    payload = event_request(tenant, custom_event("redeem"))
    change(payload, tenant)
    response = await post_firehose(client, payload)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    entries = await logged_errors(sessionmaker, tenant.id)
    if logged:
        assert [(e.source, e.error_code, e.request_id) for e in entries] == [("proxy_request", code, payload["id"])]
        settings_logged = logged_payload(entries[0])["account"]["account_settings"]
        assert tenant.inbound_token not in json.dumps(logged_payload(entries[0]))
        assert settings_logged.get("authenticationToken") in (None, "[REDACTED]")
    else:
        assert entries == []
    assert await queued_jobs(redis, settings) == []


async def test_disconnected_tenant_is_401_and_logged(client, app, sessionmaker) -> None:
    tenant = await make_tenant(sessionmaker, connected=False)
    await refresh_configs(app)
    payload = event_request(tenant, custom_event("redeem"))
    payload["account"] = account(tenant.id, "some-token")
    response = await post_firehose(client, payload)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "TENANT_DISCONNECTED"
    entries = await logged_errors(sessionmaker, tenant.id)
    assert [(e.source, e.error_code) for e in entries] == [("proxy_request", "TENANT_DISCONNECTED")]


@pytest.fixture
async def limited_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"max_request_bytes": 2000}))
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http,
    ):
        yield http


async def test_body_over_the_limit_is_413(limited_client) -> None:
    big = b'{"type": "module_registration_request", "id": "x", "pad": "' + b"a" * 3000 + b'"}'
    response = await post_firehose(limited_client, big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_chunked_body_over_the_limit_is_413(limited_client) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"type": "module_registration_request", "id": "x", "pad": "'
        for _ in range(10):
            yield b"a" * 500
        yield b'"}'

    response = await limited_client.post("/mparticle/firehose", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_body_at_the_limit_is_accepted(limited_client) -> None:
    head, tail = b'{"type": "module_registration_request", "id": "x", "pad": "', b'"}'
    body = head + b"a" * (2000 - len(head) - len(tail)) + tail
    assert len(body) == 2000
    response = await post_firehose(limited_client, body)
    assert response.status_code == 200


@pytest.fixture
async def caller_token_app(settings: Settings, sessionmaker):
    app = create_app(settings.model_copy(update={"mparticle_caller_token": SecretStr("caller-secret")}))
    async with LifespanManager(app):
        yield app


async def test_caller_token_is_required_when_configured(caller_token_app, sessionmaker, redis, settings) -> None:
    tenant = await make_tenant(sessionmaker)
    await refresh_configs(caller_token_app)
    transport = httpx.ASGITransport(app=caller_token_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
        registration = await post_firehose(client, sample("ModuleRegistrationRequest.json"))
        assert registration.status_code == 200, "registration never needs the caller token"
        results = {}
        for label, headers in {
            "missing": {},
            "wrong": {"Authorization": "Token not-it"},
            "wrong-scheme": {"Authorization": "Bearer caller-secret"},
            "right": {"Authorization": "Token caller-secret"},
        }.items():
            response = await post_firehose(client, event_request(tenant, custom_event("x")), headers)
            results[label] = (response.status_code, response.json().get("error", {}).get("code"))
    assert results == {
        "missing": (401, "INVALID_CALLER_TOKEN"),
        "wrong": (401, "INVALID_CALLER_TOKEN"),
        "wrong-scheme": (401, "INVALID_CALLER_TOKEN"),
        "right": (200, None),
    }
    entries = await logged_errors(sessionmaker, tenant.id)
    assert [e.error_code for e in entries] == ["INVALID_CALLER_TOKEN"] * 3
    assert len(await queued_jobs(redis, settings)) == 1


async def test_queue_unavailable_spools_the_request_and_answers_200(settings: Settings, sessionmaker) -> None:
    tenant = await make_tenant(sessionmaker, inbound={"track_audience_data": True})
    app = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client,
    ):
        await refresh_configs(app)
        payload = event_request(tenant, custom_event("redeem"))
        audience = subscription_request(tenant, 7, "VIP", "add")
        responses = [await post_firehose(client, body) for body in (payload, audience, payload)]
        registration = await post_firehose(client, sample("ModuleRegistrationRequest.json"))
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert [response.json()["id"] for response in responses] == [payload["id"], audience["id"], payload["id"]]
    assert registration.status_code == 200, "registration does not need the queue"
    assert await logged_errors(sessionmaker, tenant.id) == [], "accepted, not refused"
    async with sessionmaker() as session:
        spooled = (
            await session.scalars(
                select(SpooledRequest).where(SpooledRequest.tenant_id == tenant.id).order_by(SpooledRequest.id)
            )
        ).all()
    assert [row.request_id for row in spooled] == [payload["id"], audience["id"]], "the retry is spooled once"
    assert json.loads(spooled[0].body)["account"]["account_settings"]["authenticationToken"] == "[REDACTED]"
    assert json.loads(spooled[0].body)["events"] == payload["events"]
    assert [row.priority for row in spooled] == [UNMAPPED_PRIORITY, UNMAPPED_PRIORITY]
    async with sessionmaker() as session:  # the run's database is shared: leave nothing for other workers to move
        await session.execute(delete(SpooledRequest).where(SpooledRequest.tenant_id == tenant.id))
        await session.commit()
