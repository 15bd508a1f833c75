"""Claiming on real PostgreSQL, with the clock passed in: leases, per-customer order, SKIP LOCKED
between concurrent claimers, and outcomes that never overwrite a cancelled or re-claimed message."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.mapping.outbound import OutboundDraft
from shared.outbound.administration import OutboundMessageAdmin
from shared.outbound.messages import AttemptResult, ClaimedMessage, OutboundMessageRepository
from tests.e2e.outbound.helpers import load_attempts, load_message
from tests.factories import make_tenant

T0 = datetime(2030, 1, 1, tzinfo=UTC)
LEASE = timedelta(seconds=30)


async def add_messages(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str, customers: list[str]
) -> list[uuid.UUID]:
    """One queued message per entry of `customers`, due at T0, in that acceptance order."""
    ids: list[uuid.UUID] = []
    async with session_scope(sessionmaker) as session:
        repository = OutboundMessageRepository(session)
        for customer in customers:
            draft = OutboundDraft("customer_update", customer, {"environment": "production", "n": len(ids)})
            ids.append(await repository.add(tenant_id, draft, T0))
    return ids


async def claim(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str, now: datetime, limit: int = 100
) -> list[ClaimedMessage]:
    async with session_scope(sessionmaker) as session:
        return await OutboundMessageRepository(session).claim_due(tenant_id, now, now + LEASE, limit)


def outcome(message: ClaimedMessage, at: datetime, status: str, code: int | None) -> AttemptResult:
    return AttemptResult(
        message_id=message.id,
        lease_expires_at=message.lease_expires_at,
        attempted_at=at,
        status_code=code,
        error=None if status == "delivered" else f"HTTP {code}",
        new_status=status,
        next_attempt_at=at + timedelta(seconds=10) if status == "retrying" else None,
        delivered_at=at if status == "delivered" else None,
    )


async def record(sessionmaker: async_sessionmaker[AsyncSession], *results: AttemptResult) -> None:
    async with session_scope(sessionmaker) as session:
        await OutboundMessageRepository(session).record_attempts(results)


@pytest.fixture
async def tenant_id(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    return (await make_tenant(sessionmaker)).id


class TestClaiming:
    async def test_only_due_messages_are_claimed(
        self, sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str
    ) -> None:
        await add_messages(sessionmaker, tenant_id, ["a"])
        assert await claim(sessionmaker, tenant_id, T0 - timedelta(seconds=1)) == []
        assert len(await claim(sessionmaker, tenant_id, T0)) == 1

    async def test_a_lease_is_exclusive_until_it_expires(
        self, sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str
    ) -> None:
        [message_id] = await add_messages(sessionmaker, tenant_id, ["a"])
        [first] = await claim(sessionmaker, tenant_id, T0)
        assert await claim(sessionmaker, tenant_id, T0 + LEASE - timedelta(microseconds=1)) == []
        # The claimer died: once its lease has expired, the message is taken again.
        [again] = await claim(sessionmaker, tenant_id, T0 + LEASE)
        assert again.id == first.id == message_id
        assert again.lease_expires_at > first.lease_expires_at

    async def test_one_message_per_customer_oldest_first(
        self, sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str
    ) -> None:
        ids = await add_messages(sessionmaker, tenant_id, ["a", "b", "a", "c", "b"])
        claimed = await claim(sessionmaker, tenant_id, T0)
        assert [m.id for m in claimed] == [ids[0], ids[1], ids[3]]
        # While a customer's oldest message waits (leased or retrying), the later ones are held back.
        assert await claim(sessionmaker, tenant_id, T0) == []
        await record(
            sessionmaker,
            outcome(claimed[0], T0, "retrying", 503),
            outcome(claimed[1], T0, "delivered", 202),
            outcome(claimed[2], T0, "delivered", 202),
        )
        assert [m.id for m in await claim(sessionmaker, tenant_id, T0)] == [ids[4]]

    async def test_a_failed_or_cancelled_message_does_not_hold_its_customer_back(
        self, sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str
    ) -> None:
        ids = await add_messages(sessionmaker, tenant_id, ["a", "a", "a"])
        [first] = await claim(sessionmaker, tenant_id, T0)
        await record(sessionmaker, outcome(first, T0, "failed", 400))
        [second] = await claim(sessionmaker, tenant_id, T0)
        assert second.id == ids[1]
        async with session_scope(sessionmaker) as session:
            await OutboundMessageAdmin(session).cancel(tenant_id, ids[1])
        [third] = await claim(sessionmaker, tenant_id, T0 + LEASE)
        assert third.id == ids[2]

    async def test_concurrent_claimers_never_share_a_message(
        self, sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str
    ) -> None:
        ids = await add_messages(sessionmaker, tenant_id, [f"c-{n}" for n in range(40)])
        batches = await asyncio.gather(*(claim(sessionmaker, tenant_id, T0, limit=7) for _ in range(8)))
        claimed = [m.id for batch in batches for m in batch]
        assert len(claimed) == len(set(claimed))
        assert set(claimed) <= set(ids)
        assert len(claimed) == 40

    async def test_claims_are_scoped_to_the_tenant(
        self, sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str
    ) -> None:
        other = (await make_tenant(sessionmaker)).id
        await add_messages(sessionmaker, other, ["a"])
        assert await claim(sessionmaker, tenant_id, T0) == []
        async with session_scope(sessionmaker) as session:
            repository = OutboundMessageRepository(session)
            due = await repository.tenants_with_due_messages(T0, 10_000)
        assert other in due and tenant_id not in due


class TestRecordingOutcomes:
    async def test_only_tenants_with_a_claimable_message_are_due(
        self, sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str
    ) -> None:
        # tenant_id: its only customer's oldest message is leased, the next one is held back.
        await add_messages(sessionmaker, tenant_id, ["a", "a"])
        await claim(sessionmaker, tenant_id, T0, limit=1)
        # busy: its first customer is leased, but a later customer's message is due.
        busy = (await make_tenant(sessionmaker)).id
        await add_messages(sessionmaker, busy, ["x", "x", "y"])
        await claim(sessionmaker, busy, T0, limit=1)
        # waiting: its customer's oldest message waits for a resend, the later one is held back.
        waiting = (await make_tenant(sessionmaker)).id
        await add_messages(sessionmaker, waiting, ["r", "r"])
        [retried] = await claim(sessionmaker, waiting, T0, limit=1)
        await record(sessionmaker, outcome(retried, T0, "retrying", 503))
        async with session_scope(sessionmaker) as session:
            repository = OutboundMessageRepository(session)
            due = set(await repository.tenants_with_due_messages(T0, 10_000))
            next_due = await repository.next_due_at(waiting, T0)
        assert busy in due
        assert tenant_id not in due and waiting not in due
        # Early, never late: the held-back message (due at T0) counts, the resend (T0 + 10 s) is later.
        assert next_due == T0

    async def test_an_outcome_never_overwrites_a_cancelled_message(
        self, sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str
    ) -> None:
        [message_id] = await add_messages(sessionmaker, tenant_id, ["a"])
        [claimed] = await claim(sessionmaker, tenant_id, T0)
        async with session_scope(sessionmaker) as session:  # cancelled while the send is in flight
            await OutboundMessageAdmin(session).cancel(tenant_id, message_id)
        await record(sessionmaker, outcome(claimed, T0, "delivered", 202))
        message = await load_message(sessionmaker, message_id)
        assert (message.status, message.attempts, message.delivered_at) == ("cancelled", 0, None)
        # The attempt itself happened and is logged.
        assert [a.status_code for a in await load_attempts(sessionmaker, message_id)] == [202]

    async def test_an_outcome_with_an_expired_lease_is_not_applied(
        self, sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str
    ) -> None:
        [message_id] = await add_messages(sessionmaker, tenant_id, ["a"])
        [stale] = await claim(sessionmaker, tenant_id, T0)
        [current] = await claim(sessionmaker, tenant_id, T0 + LEASE)  # another worker took it over
        await record(sessionmaker, outcome(stale, T0, "retrying", 503))
        message = await load_message(sessionmaker, message_id)
        assert (message.status, message.attempts, message.lease_expires_at) == (
            "queued",
            0,
            current.lease_expires_at,
        )
        await record(sessionmaker, outcome(current, T0 + LEASE, "delivered", 202))
        message = await load_message(sessionmaker, message_id)
        assert (message.status, message.attempts, message.last_status_code) == ("delivered", 1, 202)
        assert message.lease_expires_at is None

    async def test_a_retrying_message_comes_back_when_due(
        self, sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str
    ) -> None:
        [message_id] = await add_messages(sessionmaker, tenant_id, ["a"])
        [claimed] = await claim(sessionmaker, tenant_id, T0)
        await record(sessionmaker, outcome(claimed, T0, "retrying", 429))
        async with session_scope(sessionmaker) as session:
            next_due = await OutboundMessageRepository(session).next_due_at(tenant_id, T0)
        assert next_due == T0 + timedelta(seconds=10)
        assert await claim(sessionmaker, tenant_id, T0 + timedelta(seconds=9)) == []
        [again] = await claim(sessionmaker, tenant_id, T0 + timedelta(seconds=10))
        assert (again.id, again.attempts) == (message_id, 1)

    async def test_disconnected_tenants_claimed_messages_are_cancelled(
        self, sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str
    ) -> None:
        [message_id] = await add_messages(sessionmaker, tenant_id, ["a"])
        claimed = await claim(sessionmaker, tenant_id, T0)
        async with session_scope(sessionmaker) as session:
            await OutboundMessageRepository(session).cancel_claimed(claimed, "not connected")
        message = await load_message(sessionmaker, message_id)
        assert (message.status, message.last_error, message.lease_expires_at) == ("cancelled", "not connected", None)
