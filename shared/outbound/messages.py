"""Outbound messages (the outbox towards mParticle S2S) and their attempt log: delivery statements.

Invariants:
- Delivery claims a tenant's due messages with FOR UPDATE SKIP LOCKED and stamps a lease (and its
  owner, the claiming worker); the lease value doubles as the claim token, so an outcome is only
  written by the worker holding the current lease, and never over a message cancelled meanwhile.
- Only a customer's oldest waiting message is ever due: a message waiting for a resend holds back
  that customer's later ones.
- A paused tenant (tenant.outbound_paused_at) has nothing due; its messages wait, in order.
- An outcome mParticle has given is recorded, not re-earned: when PostgreSQL refuses the write, the
  worker keeps the outcome and retries the write (worker/outbound/outcome_recorder.py) while its
  lease holds. The one window for a resend of a batch mParticle already accepted: the worker dies
  (or PostgreSQL stays unreachable past the lease) between mParticle's answer and the commit of
  the outcome; the message is then claimed again and sent with the same source_request_id and
  source_message_ids, so mParticle can recognise the duplicate.
- A lease whose owner has stopped heartbeating is released at once (release_leases_of); the
  lease's expiry is the backstop when liveness cannot be read. A live worker whose heartbeat
  lapses (Redis unreachable from it for longer than the TTL while others still see Redis) can so
  lose a lease mid-send: its outcome is then not applied and the batch may be resent, same ids.

Methods flush at most; the caller commits. The admin API's statements are in administration.py.
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
    String,
    and_,
    bindparam,
    case,
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

from shared.mapping.outbound import OutboundDraft
from shared.models import OutboundMessage, Tenant
from shared.vocabulary import WAITING_STATUSES, AttemptTrigger, OutboundStatus


@dataclass(frozen=True)
class ClaimedMessage:
    id: uuid.UUID
    customer_id: str
    sequence: int
    batch: dict[str, Any]
    attempts: int
    lease_expires_at: datetime
    trigger: AttemptTrigger = AttemptTrigger.AUTOMATIC


@dataclass(frozen=True)
class AttemptResult:
    """One delivery attempt of a claimed message and the state it leaves the message in."""

    message_id: uuid.UUID
    lease_expires_at: datetime
    attempted_at: datetime
    status_code: int | None
    error: str | None
    new_status: OutboundStatus
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    trigger: AttemptTrigger = AttemptTrigger.AUTOMATIC


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


def _tenant_paused() -> ColumnElement[bool]:
    return exists().where(Tenant.id == OutboundMessage.tenant_id, Tenant.outbound_paused_at.is_not(None))


def _due(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    return and_(_is_waiting(OutboundMessage), OutboundMessage.next_attempt_at <= now, _lease_free(now), ~_held_back())


def _claim_due_statement() -> Any:
    now = bindparam("b_now", type_=DateTime(timezone=True))
    candidates = (
        select(OutboundMessage.id)
        .where(OutboundMessage.tenant_id == bindparam("b_tenant"), _due(now), ~_tenant_paused())
        .order_by(OutboundMessage.sequence)
        .limit(bindparam("b_limit", type_=Integer))
        .with_for_update(skip_locked=True, of=OutboundMessage)
    )
    return (
        update(OutboundMessage)
        .where(OutboundMessage.id.in_(candidates))
        .values(
            lease_expires_at=bindparam("b_lease", type_=DateTime(timezone=True)),
            lease_owner=bindparam("b_owner", type_=String(64)),
        )
        .returning(
            OutboundMessage.id,
            OutboundMessage.customer_id,
            OutboundMessage.sequence,
            OutboundMessage.batch,
            OutboundMessage.attempts,
            OutboundMessage.next_attempt_trigger,
        )
        .execution_options(synchronize_session=False)
    )


# Built once: constructing this statement cost the worker more than PostgreSQL spent running it.
_CLAIM_DUE = _claim_due_statement()

# A delivery round's outcomes in two statements (arrays, not executemany: one round trip each).
# An attempt already logged (same message, same start time) is not logged again: a retried write
# whose first commit went through but was never acknowledged changes nothing.
_INSERT_ATTEMPTS = text(
    """
    INSERT INTO outbound_attempt (message_id, at, status_code, error, trigger)
    SELECT u.id, u.at, u.code, u.error, u.trigger FROM unnest(
        CAST(:ids AS uuid[]), CAST(:ats AS timestamptz[]), CAST(:codes AS int[]), CAST(:errors AS text[]),
        CAST(:triggers AS varchar[])
    ) AS u(id, at, code, error, trigger)
    WHERE NOT EXISTS (SELECT 1 FROM outbound_attempt AS a WHERE a.message_id = u.id AND a.at = u.at)
    """
)
# Only onto a message still waiting under the same lease: never over a cancelled or re-claimed one.
_APPLY_ATTEMPTS = text(
    """
    UPDATE outbound_message AS m
    SET status = u.status, attempts = m.attempts + 1, last_status_code = u.code, last_error = u.error,
        next_attempt_at = u.next_at, delivered_at = u.delivered_at, lease_expires_at = NULL, lease_owner = NULL,
        next_attempt_trigger = :automatic
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:leases AS timestamptz[]), CAST(:statuses AS varchar[]), CAST(:codes AS int[]),
        CAST(:errors AS text[]), CAST(:next_ats AS timestamptz[]), CAST(:delivered_ats AS timestamptz[])
    ) AS u(id, lease, status, code, error, next_at, delivered_at)
    WHERE m.id = u.id AND m.status = ANY(CAST(:waiting AS varchar[])) AND m.lease_expires_at = u.lease
    """
).bindparams(automatic=AttemptTrigger.AUTOMATIC.value, waiting=[status.value for status in WAITING_STATUSES])


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
                status=OutboundStatus.QUEUED,
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
        rows = await self._session.scalars(
            select(Tenant.id).where(Tenant.outbound_paused_at.is_(None)).join(first_due, true()).limit(limit)
        )
        return list(rows)

    async def claim_due(
        self, tenant_id: str, now: datetime, lease_expires_at: datetime, limit: int, *, owner: str | None = None
    ) -> list[ClaimedMessage]:
        """Lease up to `limit` of the tenant's due messages (at most one per customer, its oldest),
        none while the tenant is paused; `owner` is the claiming worker's liveness id."""
        rows = await self._session.execute(
            _CLAIM_DUE,
            {"b_tenant": tenant_id, "b_now": now, "b_lease": lease_expires_at, "b_limit": limit, "b_owner": owner},
        )
        claimed = [
            ClaimedMessage(row[0], row[1], row[2], row[3], row[4], lease_expires_at, AttemptTrigger(row[5]))
            for row in rows
        ]
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
        outcomes = {
            "ids": [r.message_id for r in results],
            "codes": [r.status_code for r in results],
            "errors": [r.error for r in results],
        }
        await self._session.execute(
            _INSERT_ATTEMPTS,
            {**outcomes, "ats": [r.attempted_at for r in results], "triggers": [r.trigger for r in results]},
        )
        await self._session.execute(
            _APPLY_ATTEMPTS,
            {
                **outcomes,
                "leases": [r.lease_expires_at for r in results],
                "statuses": [r.new_status for r in results],
                "next_ats": [r.next_attempt_at for r in results],
                "delivered_ats": [r.delivered_at for r in results],
            },
        )

    async def cancel_claimed(self, claimed: Sequence[ClaimedMessage], reason: str) -> None:
        """Cancel claimed messages that can no longer be sent (their tenant was disconnected)."""
        await self._update_claimed(claimed, status=OutboundStatus.CANCELLED, last_error=reason, next_attempt_at=None)

    async def _update_claimed(self, claimed: Sequence[ClaimedMessage], **values: Any) -> None:
        """Set `values` on each claimed message still waiting under our lease, and drop the lease."""
        for message in claimed:
            await self._session.execute(
                update(OutboundMessage)
                .where(
                    OutboundMessage.id == message.id,
                    _is_waiting(OutboundMessage),
                    OutboundMessage.lease_expires_at == message.lease_expires_at,
                )
                .values(**values, lease_expires_at=None, lease_owner=None)
                .execution_options(synchronize_session=False)
            )

    # --- leases of dead workers -------------------------------------------------------------------------

    async def lease_owners(self, now: datetime) -> list[str]:
        """The workers holding an unexpired lease on a waiting message."""
        rows = await self._session.scalars(
            select(OutboundMessage.lease_owner)
            .where(OutboundMessage.lease_owner.is_not(None))  # ix_outbound_message_lease_owner
            .where(_is_waiting(OutboundMessage), OutboundMessage.lease_expires_at > now)
            .distinct()
        )
        return [owner for owner in rows if owner is not None]

    async def release_claimed(self, claimed: Sequence[ClaimedMessage]) -> None:
        """Give back claims whose outcome will not be recorded (a run cut off): due again at once."""
        await self._update_claimed(claimed)

    async def release_leases_of(self, owners: Sequence[str]) -> int:
        """Release the leases held by `owners` (workers known dead): their messages are due again
        at once. The number of messages released."""
        if not owners:
            return 0
        released = await self._session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.lease_owner.in_(owners), _is_waiting(OutboundMessage))
            .values(lease_expires_at=None, lease_owner=None)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(released, "rowcount", 0) or 0)


ERASED_BATCH: dict[str, Any] = {"erased": True}


async def erase_customer_batches(session: AsyncSession, tenant_id: str, customer_id: str) -> int:
    """Data subject erasure: replace the S2S batch of every message of the customer (it holds
    personal data) with ERASED_BATCH, cancelling the waiting ones; returns how many were erased."""
    erased = await session.execute(
        update(OutboundMessage)
        .where(
            OutboundMessage.tenant_id == tenant_id,
            OutboundMessage.customer_id == customer_id,
            OutboundMessage.batch != ERASED_BATCH,
        )
        .values(
            batch=ERASED_BATCH,
            status=case((_is_waiting(OutboundMessage), OutboundStatus.CANCELLED.value), else_=OutboundMessage.status),
            last_error=case(
                (_is_waiting(OutboundMessage), "cancelled: data subject erasure"), else_=OutboundMessage.last_error
            ),
            next_attempt_at=case((_is_waiting(OutboundMessage), None), else_=OutboundMessage.next_attempt_at),
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(erased, "rowcount", 0) or 0)
