"""Helpers for the admin API tests: tenants and configuration arranged over HTTP, row counts read
directly from PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import (
    Customer,
    CustomerList,
    ExternalEvent,
    InboundMapping,
    InboundSettings,
    IncomingError,
    LedgerEvent,
    ListMember,
    OutboundAttempt,
    OutboundMessage,
    OutboundSettings,
    ProcessedRequest,
    SyncField,
    Tenant,
)

# Every table holding a tenant's rows (OutboundAttempt is reached through its message).
TENANT_SCOPED_MODELS: tuple[Any, ...] = (
    Tenant,
    OutboundSettings,
    InboundSettings,
    SyncField,
    ExternalEvent,
    InboundMapping,
    Customer,
    LedgerEvent,
    CustomerList,
    ListMember,
    OutboundMessage,
    IncomingError,
    ProcessedRequest,
)

OUTBOUND_BODY: dict[str, Any] = {
    "api_url": "https://s2s.eu1.mparticle.com",
    "api_key": "s2s-key-abc",
    "api_secret": "s2s-secret-DO-NOT-LEAK-4f9c",
    "development": True,
    "sync_only_configured_identifiers": True,
    "loyalty_identifier_field": "email",
    "customer_identifier_field": "email",
}


def new_tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


async def create_tenant(client: httpx.AsyncClient, headers: dict[str, str], tenant_id: str | None = None) -> Any:
    """POST /tenants; returns the 201 body (with the engine key)."""
    tenant_id = tenant_id or new_tenant_id()
    response = await client.post(
        "/api/v1/tenants", json={"id": tenant_id, "name": f"Tenant {tenant_id}"}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def connect_tenant(
    client: httpx.AsyncClient, headers: dict[str, str], tenant_id: str, **overrides: Any
) -> httpx.Response:
    """PUT the outbound settings (OUTBOUND_BODY with overrides); asserts 200."""
    response = await client.put(
        f"/api/v1/tenants/{tenant_id}/outbound-settings", json={**OUTBOUND_BODY, **overrides}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response


async def count_tenant_rows(sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str) -> dict[str, int]:
    """Rows per table that belong to `tenant_id`."""
    counts: dict[str, int] = {}
    async with sessionmaker() as session:
        for model in TENANT_SCOPED_MODELS:
            column = model.id if model is Tenant else model.tenant_id
            counts[model.__tablename__] = await session.scalar(select(func.count()).where(column == tenant_id)) or 0
        counts[OutboundAttempt.__tablename__] = (
            await session.scalar(
                select(func.count())
                .select_from(OutboundAttempt)
                .join(OutboundMessage, OutboundMessage.id == OutboundAttempt.message_id)
                .where(OutboundMessage.tenant_id == tenant_id)
            )
            or 0
        )
    return counts


def outbound_message(tenant_id: str, status: str, *, customer_id: str = "c-1", **fields: Any) -> OutboundMessage:
    """An outbound message row in `status`, due now when it is waiting."""
    waiting = status in ("queued", "retrying")
    return OutboundMessage(
        tenant_id=tenant_id,
        kind="customer_update",
        customer_id=customer_id,
        status=status,
        batch={"events": [], "user_identities": {"customer_id": customer_id}},
        attempts=0 if status == "queued" else 1,
        next_attempt_at=datetime.now(UTC) if waiting else None,
        delivered_at=datetime.now(UTC) if status == "delivered" else None,
        **fields,
    )


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The response is the error envelope with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
