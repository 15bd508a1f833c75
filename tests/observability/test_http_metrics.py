"""The proxy's request histogram, in-process: labelled by route template, never by raw path."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import ADMIN_KEY
from tests.observability.conftest import parse_samples

DURATION_COUNT = "loyalty_bridge_http_request_duration_seconds_count"


def _count(text: str, **labels: str) -> float:
    return parse_samples(text).get((DURATION_COUNT, frozenset(labels.items())), 0.0)


async def test_requests_are_labelled_by_route_template(client: httpx.AsyncClient) -> None:
    unknown_tenant, unknown_path = f"t-{uuid.uuid4().hex[:10]}", f"/nowhere/{uuid.uuid4().hex}"
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    template = {"route": "/api/v1/tenants/{tenant_id}", "method": "GET", "status": "404"}
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    before = (await client.get("/metrics")).text

    assert (await client.get(f"/api/v1/tenants/{unknown_tenant}", headers=admin)).status_code == 404
    assert (await client.get(unknown_path)).status_code == 404
    after = (await client.get("/metrics")).text

    assert _count(after, **template) - _count(before, **template) == 1
    assert _count(after, **unmatched) - _count(before, **unmatched) == 1
    assert unknown_tenant not in after and unknown_path not in after
