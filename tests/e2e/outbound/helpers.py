"""Helpers of the outbound end-to-end tests: tenants wired to the fake S2S server, polling, reads."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import OutboundAttempt, OutboundMessage
from tests.factories import TenantFixture, make_tenant
from tests.fakes.s2s_server import FakeS2SServer

DEFAULT_WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class S2STenant:
    """A tenant whose outbound settings point at the fake S2S server, with its own S2S key."""

    tenant: TenantFixture
    api_key: str
    api_secret: str

    @property
    def id(self) -> str:
        return self.tenant.id

    @property
    def engine_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tenant.engine_api_key}"}

    def url(self, path: str) -> str:
        return f"/api/v1/tenants/{self.id}/outbound/{path}"


async def make_s2s_tenant(
    sessionmaker: async_sessionmaker[AsyncSession],
    fake: FakeS2SServer,
    *,
    outbound: dict[str, Any] | None = None,
    register: bool = True,
    **tenant_options: Any,
) -> S2STenant:
    """A connected tenant sending to `fake` with fresh credentials (registered unless `register=False`)."""
    api_key = f"key-{uuid.uuid4().hex[:12]}"
    api_secret = f"secret-{uuid.uuid4().hex}"
    if register:
        fake.add_account(api_key, api_secret)
    tenant = await make_tenant(
        sessionmaker,
        outbound={"api_url": fake.url, "api_key": api_key, "api_secret": api_secret, **(outbound or {})},
        **tenant_options,
    )
    return S2STenant(tenant, api_key, api_secret)


async def wait_until(
    predicate: Callable[[], Awaitable[bool]],
    timeout_seconds: float = DEFAULT_WAIT_SECONDS,
    *,
    message: str = "condition",
) -> None:
    """Poll `predicate` until it holds; fail the test after `timeout_seconds` (a bound, not a measure)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_seconds}s waiting for {message}")
        await asyncio.sleep(0.05)


async def post_ok(client: httpx.AsyncClient, tenant: S2STenant, path: str, body: dict[str, Any]) -> uuid.UUID:
    """POST an outbound call that must be accepted; its message id."""
    response = await client.post(tenant.url(path), json=body, headers=tenant.engine_headers)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return uuid.UUID(response.json()["message_id"])


async def load_message(sessionmaker: async_sessionmaker[AsyncSession], message_id: uuid.UUID) -> OutboundMessage:
    async with sessionmaker() as session:
        message = await session.get(OutboundMessage, message_id)
        assert message is not None
        return message


async def load_messages(sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str) -> list[OutboundMessage]:
    """The tenant's messages in acceptance order."""
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(OutboundMessage).where(OutboundMessage.tenant_id == tenant_id).order_by(OutboundMessage.sequence)
        )
        return list(rows)


async def load_attempts(sessionmaker: async_sessionmaker[AsyncSession], message_id: uuid.UUID) -> list[OutboundAttempt]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(OutboundAttempt).where(OutboundAttempt.message_id == message_id).order_by(OutboundAttempt.id)
        )
        return list(rows)


def status_is(
    sessionmaker: async_sessionmaker[AsyncSession], message_id: uuid.UUID, *statuses: str
) -> Callable[[], Awaitable[bool]]:
    """A wait_until predicate: the message is in one of `statuses`."""

    async def check() -> bool:
        return (await load_message(sessionmaker, message_id)).status in statuses

    return check


def all_delivered(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str, count: int
) -> Callable[[], Awaitable[bool]]:
    """A wait_until predicate: the tenant has `count` messages, all delivered."""

    async def check() -> bool:
        messages = await load_messages(sessionmaker, tenant_id)
        return len(messages) == count and all(m.status == "delivered" for m in messages)

    return check
