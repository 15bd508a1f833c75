"""No token, key or secret in any log line: real proxy and worker processes at DEBUG level, every
line of their output read after traffic that carries each kind of secret (right and wrong ones)."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import ADMIN_KEY, SECRET_KEY
from tests.e2e.conftest import ChildProcess
from tests.fakes.s2s_server import FakeS2SServer
from tests.inbound_helpers import FIREHOSE_PATH, account, custom_event, identity, recent_ms
from tests.observability.conftest import eventually_true, wait_for_http
from tests.private_redis import free_port


@pytest.fixture
def fake_s2s() -> Iterator[FakeS2SServer]:
    server = FakeS2SServer()
    server.start()
    yield server
    server.stop()


def _event_request(tenant_id: str, token: str) -> dict[str, object]:
    return {
        "type": "event_processing_request",
        "id": str(uuid.uuid4()),
        "timestamp_ms": recent_ms(),
        "firehose_version": "3.2.0",
        "account": account(tenant_id, token),
        "user_identities": [identity("customer", "C-1")],
        "events": [custom_event("Purchase")],
    }


async def test_no_secret_reaches_the_logs(spawn: Callable[..., ChildProcess], fake_s2s: FakeS2SServer) -> None:
    s2s_key, s2s_secret = f"s2s-key-{uuid.uuid4().hex}", f"s2s-secret-{uuid.uuid4().hex}"
    fake_s2s.add_account(s2s_key, s2s_secret)
    wrong_token, wrong_engine_key = f"wrong-token-{uuid.uuid4().hex}", f"wrong-key-{uuid.uuid4().hex}"
    port = free_port()
    proxy = spawn("proxy", HOST="127.0.0.1", PORT=str(port), LOG_LEVEL="DEBUG", LOG_FORMAT="json")
    worker = spawn("worker", HOST="127.0.0.1", METRICS_PORT="0", LOG_LEVEL="DEBUG", LOG_FORMAT="json")
    await wait_for_http(f"http://127.0.0.1:{port}/readyz", proxy)

    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=admin) as http:
        created = await http.post("/api/v1/tenants", json={"id": tenant_id, "name": "Logs"})
        engine_key = created.json()["engine_api_key"]
        outbound_settings = {
            "api_url": fake_s2s.url,
            "api_key": s2s_key,
            "api_secret": s2s_secret,
            "development": True,
            "sync_only_configured_identifiers": False,
            "loyalty_identifier_field": "id",
            "customer_identifier_field": "customer_id",
        }
        saved = await http.put(f"/api/v1/tenants/{tenant_id}/outbound-settings", json=outbound_settings)
        assert saved.status_code == 200, saved.text
        token = (await http.get(f"/api/v1/tenants/{tenant_id}/inbound-settings")).json()["authentication_token"]

        async def accepted() -> bool:  # once the proxy's config cache has the new tenant
            response = await http.post(FIREHOSE_PATH, json=_event_request(tenant_id, token))
            return response.status_code == 200

        await eventually_true(accepted)
        assert (await http.post(FIREHOSE_PATH, json=_event_request(tenant_id, wrong_token))).status_code == 401
        call = {"customer": {"id": "C-1"}, "event_name": "Welcome", "event_type": "other", "data": {}}
        path = f"/api/v1/tenants/{tenant_id}/outbound/marketing-communications"
        refused = await http.post(path, json=call, headers={"Authorization": f"Bearer {wrong_engine_key}"})
        assert refused.status_code == 401
        sent = await http.post(path, json=call, headers={"Authorization": f"Bearer {engine_key}"})
        assert sent.status_code == 202
        # Delivered with the S2S key and secret (HTTP Basic) by the worker.
        await eventually_true(lambda: fake_s2s.accepted(s2s_key))
        await eventually_true(lambda: "firehose_batch_applied" in worker.log_path.read_text())

    for child in (proxy, worker):
        child.signal(signal.SIGTERM)
        await child.wait(30)  # a stop (uvicorn re-raises SIGTERM after its graceful shutdown)
    secrets = [ADMIN_KEY, SECRET_KEY, engine_key, wrong_engine_key, token, wrong_token, s2s_key, s2s_secret]
    for child in (proxy, worker):
        lines = [line for line in child.log_path.read_text().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        assert all(isinstance(record, dict) and record.get("event") and record.get("level") for record in records)
        assert any(tenant_id in line for line in lines)  # it did log about this tenant's calls
        for secret in secrets:
            assert not [line for line in lines if secret in line], f"{child.command} logged a secret"
    proxy_records = [json.loads(line) for line in proxy.log_path.read_text().splitlines() if line.strip()]
    assert any(r.get("logger", "").startswith("uvicorn") and "startup complete" in r["event"] for r in proxy_records)
    worker_records = [json.loads(line) for line in worker.log_path.read_text().splitlines() if line.strip()]
    assert any(r["event"] == "outbound_request_sent" and r.get("tenant_id") == tenant_id for r in worker_records)
    assert any(r["event"] == "firehose_batch_applied" and r.get("batch_id") for r in worker_records)
