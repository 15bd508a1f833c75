"""Helpers of the inbound tests: Firehose messages for a test tenant, posting them, reading results.

Assertions on stored records go through the admin read routes where a test is about what an
operator sees; helpers here read PostgreSQL directly only for what no route exposes (the queue,
processed requests)."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import IncomingError
from tests.factories import TenantFixture

SAMPLES = Path(__file__).resolve().parent / "data" / "firehose"
FIREHOSE_PATH = "/mparticle/firehose"


def recent_ms(minutes_ago: int = 1) -> int:
    """An epoch-ms timestamp well within the default max_data_age_hours (24)."""
    return int(time.time() * 1000) - minutes_ago * 60_000


def account(tenant: TenantFixture | str, token: str | None = None) -> dict[str, Any]:
    """The account block mParticle sends for a tenant (its id and, by default, its inbound token)."""
    if isinstance(tenant, str):
        return {"account_id": 123456, "account_settings": {"loyaltyEnvironment": tenant, "authenticationToken": token}}
    settings = {"loyaltyEnvironment": tenant.id, "authenticationToken": token or tenant.inbound_token}
    return {"account_id": 123456, "account_settings": settings}


def sample(name: str, tenant: TenantFixture | None = None, *, fresh_id: bool = True) -> dict[str, Any]:
    """A sample from tests/data/firehose with the tenant's account settings (and a fresh request id
    and recent event timestamps, as mParticle would send it now: the samples date from 2024, older
    than the default max_data_age_hours)."""
    payload: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    if tenant is not None:
        payload["account"] = account(tenant)
    if fresh_id:
        payload["id"] = str(uuid.uuid4())
        for event in payload.get("events") or []:
            if "timestamp_ms" in event:
                event["timestamp_ms"] = recent_ms()
    return payload


def identity(kind: str, value: str, encoding: str = "raw") -> dict[str, str]:
    return {"type": kind, "encoding": encoding, "value": value}


def custom_event(name: str, attributes: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "type": "custom_event",
        "id": str(uuid.uuid4()),
        "timestamp_ms": recent_ms(),
        "name": name,
        "custom_event_type": "other",
        "attributes": attributes or {},
        **fields,
    }


def event_request(
    tenant: TenantFixture,
    *events: dict[str, Any],
    customer: str | None = None,
    identities: list[dict[str, str]] | None = None,
    request_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An event_processing_request for `tenant` from the customer identity `customer`."""
    return {
        "type": "event_processing_request",
        "id": request_id or str(uuid.uuid4()),
        "timestamp_ms": recent_ms(),
        "firehose_version": "3.2.0",
        "account": account(tenant),
        "user_identities": identities if identities is not None else [identity("customer", customer or "C-1")],
        "events": list(events),
        **fields,
    }


def membership_request(tenant: TenantFixture, *profiles: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "audience_membership_change_request",
        "id": str(uuid.uuid4()),
        "timestamp_ms": 1714592744065,
        "firehose_version": "3.2.0",
        "account": account(tenant),
        "user_profiles": list(profiles),
    }


def profile(customer: str, *audiences: tuple[int, str, str]) -> dict[str, Any]:
    """A user profile with audiences given as (audience_id, audience_name, action)."""
    return {
        "user_identities": [identity("customer", customer)],
        "audiences": [{"audience_id": aid, "audience_name": name, "action": action} for aid, name, action in audiences],
    }


def dsr_request(tenant: TenantFixture, request_type: str, **identities: str) -> dict[str, Any]:
    """A dsr_processing_request (GDPR) for the subject with these raw identities (`email=…`)."""
    return {
        "type": "dsr_processing_request",
        "id": str(uuid.uuid4()),
        "timestamp_ms": recent_ms(),
        "firehose_version": "3.2.0",
        "account": account(tenant),
        "subject_request_id": str(uuid.uuid4()),
        "subject_request_type": request_type,
        "submitted_time": 1714592744.067235,
        "subject_identities": {key: {"encoding": "raw", "value": value} for key, value in identities.items()},
        "api_version": "3.0",
        "regulation": "gdpr",
    }


def subscription_request(tenant: TenantFixture, audience_id: int, name: str, action: str) -> dict[str, Any]:
    return {
        "type": "audience_subscription_request",
        "id": str(uuid.uuid4()),
        "timestamp_ms": 1714592744066,
        "firehose_version": "3.2.0",
        "account": account(tenant),
        "audience_id": audience_id,
        "audience_name": name,
        "action": action,
    }


async def post_firehose(
    client: httpx.AsyncClient, payload: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await client.post(
        FIREHOSE_PATH, content=body, headers={"Content-Type": "application/json", **(headers or {})}
    )


async def refresh_configs(app: FastAPI) -> None:
    """Make the proxy see tenants created after it started (instead of waiting for its poll)."""
    await app.state.proxy.tenant_configs.refresh()


async def logged_errors(sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str) -> list[IncomingError]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(IncomingError).where(IncomingError.tenant_id == tenant_id).order_by(IncomingError.id)
        )
        return list(rows)


def deep_copy(payload: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(payload)


class AdminReader:
    """Reads records the way an operator does: through the admin API."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str], tenant_id: str) -> None:
        self.client = client
        self.headers = headers
        self.base = f"/api/v1/tenants/{tenant_id}"

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(self.base + path, headers=self.headers, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def all_items(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paginated list, following next_cursor."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await self.get(path, **params, **({"cursor": cursor} if cursor else {}))
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    async def customers(self, **params: Any) -> list[dict[str, Any]]:
        return await self.all_items("/customers", **params)

    async def customer(self, customer_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.get(f"/customers/{customer_id}")
        return result

    async def ledger(self, customer_id: str) -> list[dict[str, Any]]:
        return await self.all_items(f"/customers/{customer_id}/events", limit=500)

    async def lists(self) -> list[dict[str, Any]]:
        return await self.all_items("/lists")

    async def members(self, list_id: int) -> list[str]:
        return [member["customer_id"] for member in await self.all_items(f"/lists/{list_id}/members")]


def logged_payload(entry: IncomingError) -> dict[str, Any]:
    """The request payload stored with an error log entry."""
    assert isinstance(entry.payload, dict)
    return entry.payload
