"""Outbound messages (the outbox towards mParticle S2S) and their attempt log: every statement.

Delivery claims a tenant's due messages with FOR UPDATE SKIP LOCKED and stamps a lease; the lease
value doubles as the claim token, so an outcome is only written by the worker holding the current
lease, and never over a message that was cancelled meanwhile. Only a customer's oldest waiting
message is ever due: a message waiting for a resend holds back that customer's later ones.
Methods flush at most; the caller commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    DateTime,
    Integer,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from shared.errors import Conflict, NotFound
from shared.mapping.outbound import OutboundDraft
from shared.models import WAITING_STATUSES, OutboundAttempt, OutboundMessage, Tenant

# A message can be cancelled until it is delivered (a failed one too: the operator drops it).
CANCELLABLE_STATUSES = ("queued", "retrying", "failed")


@dataclass(frozen=True)
class ClaimedMessage:
    id: uuid.UUID
    customer_id: str
    sequence: int
    batch: dict[str, Any]
    attempts: int
    lease_expires_at: datetime


@dataclass(frozen=True)
class AttemptResult:
    """One delivery attempt of a claimed message and the state it leaves the message in."""

    message_id: uuid.UUID
    lease_expires_at: datetime
    attempted_at: datetime
    status_code: int | None
    error: str | None
    new_status: str
    next_attempt_at: datetime | None
    delivered_at: datetime | None


def _is_waiting(message: type[OutboundMessage] | Any) -> ColumnElement[bool]:
    return message.status.in_(WAITING_STATUSES)


def _lease_free(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    return or_(OutboundMessage.lease_expires_at.is_(None), OutboundMessage.lease_expires_at <= now)


def _held_back() -> ColumnElement[bool]:
    """An older message of the same customer is still waiting (per-customer order).

    OFFSET 0 keeps this a correlated subquery, probed per candidate through
    ix_outbound_message_waiting_customer: turned into an anti-join, a planner without statistics
    (a fresh or just-filled table) scanned every waiting message of the tenant per candidate.
    """
    earlier = aliased(OutboundMessage, name="earlier")
    return (
        select(earlier.id)
        .where(
            earlier.tenant_id == OutboundMessage.tenant_id,
            earlier.customer_id == OutboundMessage.customer_id,
            _is_waiting(earlier),
            earlier.sequence < OutboundMessage.sequence,
        )
        .offset(0)
        .exists()
    )


def _due(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    return and_(_is_waiting(OutboundMessage), OutboundMessage.next_attempt_at <= now, _lease_free(now), ~_held_back())


def _claim_due_statement() -> Any:
    now = bindparam("b_now", type_=DateTime(timezone=True))
    candidates = (
        select(OutboundMessage.id)
        .where(OutboundMessage.tenant_id == bindparam("b_tenant"), _due(now))
        .order_by(OutboundMessage.sequence)
        .limit(bindparam("b_limit", type_=Integer))
        .with_for_update(skip_locked=True, of=OutboundMessage)
    )
    return (
        update(OutboundMessage)
        .where(OutboundMessage.id.in_(candidates))
        .values(lease_expires_at=bindparam("b_lease", type_=DateTime(timezone=True)))
        .returning(
            OutboundMessage.id,
            OutboundMessage.customer_id,
            OutboundMessage.sequence,
            OutboundMessage.batch,
            OutboundMessage.attempts,
        )
        .execution_options(synchronize_session=False)
    )


# Built once: constructing this statement cost the worker more than PostgreSQL spent running it.
_CLAIM_DUE = _claim_due_statement()

# A delivery round's outcomes in two statements (arrays, not executemany: one round trip each).
_INSERT_ATTEMPTS = text(
    """
    INSERT INTO outbound_attempt (message_id, at, status_code, error)
    SELECT * FROM unnest(
        CAST(:ids AS uuid[]), CAST(:ats AS timestamptz[]), CAST(:codes AS int[]), CAST(:errors AS text[])
    )
    """
)
# Only onto a message still waiting under the same lease: never over a cancelled or re-claimed one.
_APPLY_ATTEMPTS = text(
    """
    UPDATE outbound_message AS m
    SET status = u.status, attempts = m.attempts + 1, last_status_code = u.code, last_error = u.error,
        next_attempt_at = u.next_at, delivered_at = u.delivered_at, lease_expires_at = NULL
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:leases AS timestamptz[]), CAST(:statuses AS varchar[]), CAST(:codes AS int[]),
        CAST(:errors AS text[]), CAST(:next_ats AS timestamptz[]), CAST(:delivered_ats AS timestamptz[])
    ) AS u(id, lease, status, code, error, next_at, delivered_at)
    WHERE m.id = u.id AND m.status IN ('queued', 'retrying') AND m.lease_expires_at = u.lease
    """
)


class OutboundMessageRepository:
    """Statements on outbound_message / outbound_attempt, always scoped by tenant where a caller names one."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # --- storing -----------------------------------------------------------------------------------

    async def add(self, tenant_id: str, draft: OutboundDraft, now: datetime) -> uuid.UUID:
        """Store one message as `queued`, due now (no engine-key check: for callers that are not the API)."""
        message_id = uuid.uuid4()
        await self._session.execute(
            insert(OutboundMessage).values(
                id=message_id,
                tenant_id=tenant_id,
                kind=draft.kind,
                customer_id=draft.customer_id,
                status="queued",
                batch=draft.batch,
                attempts=0,
                next_attempt_at=now,
            )
        )
        return message_id

    # --- delivery -----------------------------------------------------------------------------------

    async def tenants_with_due_messages(self, now: datetime, limit: int) -> list[str]:
        """Tenants that have a message ready to be sent now.

        Per tenant, its waiting messages are walked in acceptance order up to the first due one
        (LATERAL ... LIMIT 1), so a backlog costs a few probes, not one per message: a DISTINCT
        over every due message took 0.2 s on 30k waiting messages, and seconds on a table without
        statistics (the held-back probe then uses the wrong index), once per second.
        """
        first_due = (
            select(OutboundMessage.id)
            .where(OutboundMessage.tenant_id == Tenant.id, _due(now))
            .order_by(OutboundMessage.sequence)
            .limit(1)
            .lateral("first_due")
        )
        rows = await self._session.scalars(select(Tenant.id).join(first_due, true()).limit(limit))
        return list(rows)

    async def claim_due(
        self, tenant_id: str, now: datetime, lease_expires_at: datetime, limit: int
    ) -> list[ClaimedMessage]:
        """Lease up to `limit` of the tenant's due messages (at most one per customer, its oldest)."""
        rows = await self._session.execute(
            _CLAIM_DUE, {"b_tenant": tenant_id, "b_now": now, "b_lease": lease_expires_at, "b_limit": limit}
        )
        claimed = [ClaimedMessage(row[0], row[1], row[2], row[3], row[4], lease_expires_at) for row in rows]
        return sorted(claimed, key=lambda message: message.sequence)

    async def next_due_at(self, tenant_id: str, now: datetime) -> datetime | None:
        """When the tenant's next message becomes due (leased ones aside).

        Held-back messages count too, so the answer may be early, never late: a caller only looks
        again sooner. Checking each one (an index probe per waiting message) made this take
        seconds on a large backlog without planner statistics.
        """
        due_at: datetime | None = await self._session.scalar(
            select(func.min(OutboundMessage.next_attempt_at)).where(
                OutboundMessage.tenant_id == tenant_id,
                _is_waiting(OutboundMessage),
                _lease_free(now),
            )
        )
        return due_at

    async def record_attempts(self, results: Sequence[AttemptResult]) -> None:
        """Log every attempt and move each message on, unless it was cancelled (or re-claimed) meanwhile."""
        if not results:
            return
        await self._session.execute(
            _INSERT_ATTEMPTS,
            {
                "ids": [r.message_id for r in results],
                "ats": [r.attempted_at for r in results],
                "codes": [r.status_code for r in results],
                "errors": [r.error for r in results],
            },
        )
        await self._session.execute(
            _APPLY_ATTEMPTS,
            {
                "ids": [r.message_id for r in results],
                "leases": [r.lease_expires_at for r in results],
                "statuses": [r.new_status for r in results],
                "codes": [r.status_code for r in results],
                "errors": [r.error for r in results],
                "next_ats": [r.next_attempt_at for r in results],
                "delivered_ats": [r.delivered_at for r in results],
            },
        )

    async def cancel_claimed(self, claimed: Sequence[ClaimedMessage], reason: str) -> None:
        """Cancel claimed messages that can no longer be sent (their tenant was disconnected)."""
        for message in claimed:
            await self._session.execute(
                update(OutboundMessage)
                .where(
                    OutboundMessage.id == message.id,
                    _is_waiting(OutboundMessage),
                    OutboundMessage.lease_expires_at == message.lease_expires_at,
                )
                .values(status="cancelled", last_error=reason, next_attempt_at=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )

    # --- the admin API --------------------------------------------------------------------------------

    async def tenant_exists(self, tenant_id: str) -> bool:
        return bool(await self._session.scalar(select(exists().where(Tenant.id == tenant_id))))

    async def list_messages(
        self,
        tenant_id: str,
        *,
        statuses: Sequence[str] | None,
        kind: str | None,
        customer_id: str | None,
        before_sequence: int | None,
        limit: int,
    ) -> list[OutboundMessage]:
        """Up to `limit` of the tenant's messages, newest first, older than `before_sequence`."""
        stmt = select(OutboundMessage).where(OutboundMessage.tenant_id == tenant_id)
        if statuses is not None:
            stmt = stmt.where(OutboundMessage.status.in_(statuses))
        if kind is not None:
            stmt = stmt.where(OutboundMessage.kind == kind)
        if customer_id is not None:
            stmt = stmt.where(OutboundMessage.customer_id == customer_id)
        if before_sequence is not None:
            stmt = stmt.where(OutboundMessage.sequence < before_sequence)
        stmt = stmt.order_by(OutboundMessage.sequence.desc()).limit(limit)
        return list(await self._session.scalars(stmt))

    async def get_message(self, tenant_id: str, message_id: uuid.UUID) -> OutboundMessage:
        """The tenant's message; NotFound for an unknown id or another tenant's message."""
        message = await self._session.scalar(
            select(OutboundMessage).where(OutboundMessage.tenant_id == tenant_id, OutboundMessage.id == message_id)
        )
        if message is None:
            raise NotFound(f"outbound message {message_id} not found")
        return message

    async def attempt_log(self, message_id: uuid.UUID) -> list[OutboundAttempt]:
        """Every attempt of a message, oldest first."""
        stmt = select(OutboundAttempt).where(OutboundAttempt.message_id == message_id).order_by(OutboundAttempt.id)
        return list(await self._session.scalars(stmt))

    async def requeue_failed(self, tenant_id: str, message_id: uuid.UUID, now: datetime) -> OutboundMessage:
        """Put a `failed` message back in the queue, due now, its attempt counter reset (log kept)."""
        return await self._transition(
            tenant_id,
            message_id,
            from_statuses=("failed",),
            values={"status": "queued", "attempts": 0, "next_attempt_at": now, "lease_expires_at": None},
        )

    async def cancel(self, tenant_id: str, message_id: uuid.UUID) -> OutboundMessage:
        """Cancel a message that is not delivered yet."""
        return await self._transition(
            tenant_id,
            message_id,
            from_statuses=CANCELLABLE_STATUSES,
            values={"status": "cancelled", "next_attempt_at": None, "lease_expires_at": None},
        )

    async def _transition(
        self, tenant_id: str, message_id: uuid.UUID, *, from_statuses: Sequence[str], values: dict[str, Any]
    ) -> OutboundMessage:
        updated = await self._session.scalar(
            update(OutboundMessage)
            .where(
                OutboundMessage.tenant_id == tenant_id,
                OutboundMessage.id == message_id,
                OutboundMessage.status.in_(from_statuses),
            )
            .values(**values)
            .returning(OutboundMessage)
            .execution_options(populate_existing=True)
        )
        if updated is not None:
            return updated
        current = await self.get_message(tenant_id, message_id)
        raise Conflict(f"outbound message {message_id} is {current.status}")
