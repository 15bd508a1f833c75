"""Both /metrics endpoints, scraped from real `loyalty-bridge proxy` and `worker` processes after
known traffic: promtool accepts the expositions, and the contract's metrics carry the right labels
and values (the processes are fresh, so their counters start at zero).

The processes run on a database of this test alone: a worker's sweeps cover its whole database
(the Firehose spool, due outbound messages of every tenant), so in the run's shared database work
left by earlier tests would be counted here too."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import LedgerEvent, OutboundMessage
from shared.settings import Settings
from tests.e2e.conftest import ChildProcess, own_database_sessionmaker, own_database_settings
from tests.e2e.outbound.helpers import make_s2s_tenant
from tests.fakes.s2s_server import FakeS2SServer
from tests.inbound_helpers import FIREHOSE_PATH, account, custom_event, event_request
from tests.observability.conftest import (
    eventually_true,
    parse_samples,
    promtool_check,
    value,
    wait_for_http,
)
from tests.private_redis import free_port

PURCHASE_MAPPING = {"loyalty_event": "purchase", "event_type": "custom_event", "event_name": "Purchase", "priority": 10}


@pytest.fixture
def settings(settings: Settings, own_database_url: str) -> Settings:
    return own_database_settings(settings, own_database_url).model_copy(
        update={"outbound_retry_base_seconds": 0.1, "outbound_timeout_seconds": 2.0}
    )


@pytest.fixture
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with own_database_sessionmaker(settings) as sessions:
        yield sessions


@pytest.fixture
def fake_s2s() -> Iterator[FakeS2SServer]:
    server = FakeS2SServer()
    server.start()
    yield server
    server.stop()


async def _ledger_rows(sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str) -> int:
    async with sessionmaker() as session:
        query = select(func.count()).select_from(LedgerEvent).where(LedgerEvent.tenant_id == tenant_id)
        count = await session.scalar(query)
    return int(count or 0)


async def _delivered(sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str) -> bool:
    async with sessionmaker() as session:
        rows = await session.scalars(select(OutboundMessage.status).where(OutboundMessage.tenant_id == tenant_id))
        return list(rows) == ["delivered"]


async def test_proxy_and_worker_metrics_after_known_traffic(
    spawn: Callable[..., ChildProcess], sessionmaker: async_sessionmaker[AsyncSession], fake_s2s: FakeS2SServer
) -> None:
    inbound = await make_s2s_tenant(
        sessionmaker, fake_s2s, inbound={"auto_subscribe": True}, inbound_mappings=[PURCHASE_MAPPING]
    )
    refused = await make_s2s_tenant(sessionmaker, fake_s2s)
    fake_s2s.fail(503, times=None, api_key=refused.api_key)  # its message stays in the resend queue
    # Started after the tenants exist: their configuration is loaded at start-up, so no request is
    # refused as UNKNOWN_TENANT while a cache catches up (the counts below are exact).
    proxy_port, worker_port = free_port(), free_port()
    proxy = spawn("proxy", HOST="127.0.0.1", PORT=str(proxy_port), MAX_REQUEST_BYTES="65536")
    # Slow resends, many of them: the refused message stays `retrying` for the whole test.
    worker = spawn(
        "worker",
        HOST="127.0.0.1",
        METRICS_PORT=str(worker_port),
        OUTBOUND_RETRY_BASE_SECONDS="1",
        OUTBOUND_MAX_RESENDS="50",
    )
    proxy_url, worker_metrics_url = f"http://127.0.0.1:{proxy_port}", f"http://127.0.0.1:{worker_port}/metrics"
    await wait_for_http(f"{proxy_url}/readyz", proxy)
    await wait_for_http(worker_metrics_url, worker)

    async with httpx.AsyncClient(base_url=proxy_url) as http:
        purchase = event_request(inbound.tenant, custom_event("Purchase", {"amount": 3}), customer="C-metrics")
        assert (await http.post(FIREHOSE_PATH, json=purchase)).status_code == 200
        wrong_token = event_request(inbound.tenant, custom_event("Purchase"), customer="C-metrics")
        wrong_token["account"] = account(inbound.id, "not-the-token")
        assert (await http.post(FIREHOSE_PATH, json=wrong_token)).status_code == 401
        assert (await http.post(FIREHOSE_PATH, content=b"{not json")).status_code == 400
        assert (await http.post(FIREHOSE_PATH, content=b" " * 70_000)).status_code == 413
        registration = {"type": "module_registration_request", "id": str(uuid.uuid4()), "timestamp_ms": 1}
        assert (await http.post(FIREHOSE_PATH, content=json.dumps(registration))).status_code == 200
        for tenant in (inbound, refused):
            call = {"customer": {"id": "C-metrics"}, "event_name": "Welcome", "event_type": "other", "data": {}}
            response = await http.post(tenant.url("marketing-communications"), json=call, headers=tenant.engine_headers)
            assert response.status_code == 202, response.text

        async def welcome_delivered() -> bool:
            return await _delivered(sessionmaker, inbound.id)

        async def purchase_in_ledger() -> bool:
            return await _ledger_rows(sessionmaker, inbound.id) > 0

        await eventually_true(welcome_delivered, children=(proxy, worker))
        await eventually_true(purchase_in_ledger, children=(proxy, worker))
        proxy_text = (await http.get("/metrics")).text

        async def worker_caught_up() -> bool:
            samples = parse_samples((await http.get(worker_metrics_url)).text)
            return (
                samples.get(("loyalty_bridge_outbound_delivered_total", frozenset())) == 1
                and samples.get(("loyalty_bridge_inbound_events_applied_total", frozenset())) == 1
                and samples.get(("loyalty_bridge_outbound_resend_queue_size", frozenset()), 0) >= 1
                and all(
                    samples.get(("loyalty_bridge_queue_depth", frozenset({("priority", band)}))) == 0
                    for band in ("0-99", "100-499", "500-1000")
                )
            )

        await eventually_true(worker_caught_up, children=(proxy, worker))
        worker_text = (await http.get(worker_metrics_url)).text
        assert "/metrics" not in (await http.get("/openapi.json")).json()["paths"]

    for text in (proxy_text, worker_text):
        checked = promtool_check(text)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert inbound.id not in text and refused.id not in text  # no tenant ids in any label

    proxy_samples = parse_samples(proxy_text)
    requests = "loyalty_bridge_firehose_requests_total"
    assert value(proxy_samples, requests, type="event_processing_request", outcome="accepted") == 1
    assert value(proxy_samples, requests, type="event_processing_request", outcome="rejected") == 1
    assert value(proxy_samples, requests, type="module_registration_request", outcome="accepted") == 1
    assert value(proxy_samples, requests, type="unknown", outcome="rejected") == 2
    rejections = "loyalty_bridge_firehose_rejections_total"
    assert value(proxy_samples, rejections, type="event_processing_request", error_code="INVALID_TOKEN") == 1
    assert value(proxy_samples, rejections, type="unknown", error_code="MALFORMED_JSON") == 1
    assert value(proxy_samples, rejections, type="unknown", error_code="PAYLOAD_TOO_LARGE") == 1
    assert value(proxy_samples, "loyalty_bridge_outbound_accepted_total") == 2
    # The rejected request of a known tenant is in its error log; the malformed one names no tenant.
    errors = "loyalty_bridge_error_log_entries_total"
    assert value(proxy_samples, errors, source="proxy_request", code="INVALID_TOKEN") == 1
    duration = "loyalty_bridge_http_request_duration_seconds_count"
    assert value(proxy_samples, duration, route="/mparticle/firehose", method="POST", status="200") == 2
    assert value(proxy_samples, duration, route="/mparticle/firehose", method="POST", status="401") == 1
    assert value(proxy_samples, duration, route="/mparticle/firehose", method="POST", status="413") == 1
    outbound_route = "/api/v1/tenants/{tenant_id}/outbound/marketing-communications"
    assert value(proxy_samples, duration, route=outbound_route, method="POST", status="202") == 2

    worker_samples = parse_samples(worker_text)
    assert value(worker_samples, "loyalty_bridge_inbound_events_applied_total") == 1
    assert value(worker_samples, "loyalty_bridge_inbound_requests_applied_total") == 1
    assert value(worker_samples, "loyalty_bridge_inbound_batches_applied_total") == 1
    assert value(worker_samples, "loyalty_bridge_inbound_processing_failures_total") == 0
    assert value(worker_samples, "loyalty_bridge_outbound_delivered_total") == 1
    assert value(worker_samples, "loyalty_bridge_outbound_failed_total") == 0
    assert value(worker_samples, "loyalty_bridge_outbound_attempts_total", outcome="2xx") == 1
    assert value(worker_samples, "loyalty_bridge_outbound_attempts_total", outcome="5xx") >= 1
    assert value(worker_samples, "loyalty_bridge_outbound_attempts_total", outcome="timeout") == 0
    for band in ("0-99", "100-499", "500-1000"):
        assert value(worker_samples, "loyalty_bridge_queue_depth", priority=band) == 0
        assert value(worker_samples, "loyalty_bridge_queue_oldest_age_seconds", priority=band) == 0
