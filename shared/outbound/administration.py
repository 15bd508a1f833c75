"""Outbound messages for operators: lists by filter, one message with its attempt log, retry of
failed messages (one, or every one matching a filter), cancel, and pausing a tenant's delivery.

Every statement is scoped by the tenant the caller names. A retried message is due at once with
its attempt counter reset and `next_attempt_trigger = 'manual_retry'`, so its next attempt is told
apart from the schedule's in the attempt log. Methods flush at most; the caller commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import Conflict, NotFound
from shared.models import OutboundAttempt, OutboundMessage, Tenant
from shared.tenants.rows import require_tenant
from shared.vocabulary import WAITING_STATUSES, AttemptTrigger, OutboundStatus

# A message can be cancelled until it is delivered (a failed one too: the operator drops it).
CANCELLABLE_STATUSES = (*WAITING_STATUSES, OutboundStatus.FAILED)
RETRYABLE_STATUS = OutboundStatus.FAILED


@dataclass(frozen=True)
class MessageFilter:
    """The admin list's filters; None means "any". The `created_*` bounds are inclusive."""

    statuses: Sequence[str] | None = None
    kind: str | None = None
    customer_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    last_status_code: int | None = None

    def conditions(self, tenant_id: str) -> list[ColumnElement[bool]]:
        """WHERE conditions selecting the tenant's messages that match."""
        found: list[ColumnElement[bool]] = [OutboundMessage.tenant_id == tenant_id]
        if self.statuses is not None:
            found.append(OutboundMessage.status.in_(self.statuses))
        if self.kind is not None:
            found.append(OutboundMessage.kind == self.kind)
        if self.customer_id is not None:
            found.append(OutboundMessage.customer_id == self.customer_id)
        if self.created_from is not None:
            found.append(OutboundMessage.created_at >= self.created_from)
        if self.created_to is not None:
            found.append(OutboundMessage.created_at <= self.created_to)
        if self.last_status_code is not None:
            found.append(OutboundMessage.last_status_code == self.last_status_code)
        return found

    def failed_only(self) -> MessageFilter:
        """This filter narrowed to `failed` messages (the only ones a retry takes)."""
        statuses = [RETRYABLE_STATUS] if self.statuses is None or RETRYABLE_STATUS in self.statuses else []
        return MessageFilter(
            statuses, self.kind, self.customer_id, self.created_from, self.created_to, self.last_status_code
        )


def _requeue_values(now: datetime) -> dict[str, Any]:
    return {
        "status": OutboundStatus.QUEUED,
        "attempts": 0,
        "next_attempt_at": now,
        "lease_expires_at": None,
        "lease_owner": None,
        "next_attempt_trigger": AttemptTrigger.MANUAL_RETRY,
    }


class OutboundMessageAdmin:
    """The admin API's statements on outbound_message / outbound_attempt / tenant pause."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def require_tenant(self, tenant_id: str) -> None:
        """NotFound unless the tenant exists."""
        await require_tenant(self._session, tenant_id)

    # --- reading ----------------------------------------------------------------------------------------

    async def list_messages(
        self, tenant_id: str, message_filter: MessageFilter, *, before_sequence: int | None, limit: int
    ) -> list[OutboundMessage]:
        """Up to `limit` of the tenant's matching messages, newest first, older than `before_sequence`."""
        stmt: Select[Any] = select(OutboundMessage).where(*message_filter.conditions(tenant_id))
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

    # --- retry and cancel -------------------------------------------------------------------------------

    async def requeue_failed(self, tenant_id: str, message_id: uuid.UUID, now: datetime) -> OutboundMessage:
        """Put a `failed` message back in the queue, due now, its attempt counter reset (log kept)."""
        return await self._transition(
            tenant_id, message_id, from_statuses=(RETRYABLE_STATUS,), values=_requeue_values(now)
        )

    async def count_failed_matching(self, tenant_id: str, message_filter: MessageFilter) -> int:
        """How many of the tenant's `failed` messages match the filter (a bulk retry's dry run)."""
        conditions = message_filter.failed_only().conditions(tenant_id)
        count = await self._session.scalar(select(func.count()).select_from(OutboundMessage).where(*conditions))
        return int(count or 0)

    async def requeue_failed_matching(self, tenant_id: str, message_filter: MessageFilter, now: datetime) -> int:
        """Put every `failed` message matching the filter back in the queue (one statement, so a
        message retried or cancelled meanwhile by someone else is simply not taken); the count."""
        requeued = await self._session.execute(
            update(OutboundMessage)
            .where(*message_filter.failed_only().conditions(tenant_id))
            .values(**_requeue_values(now))
            .execution_options(synchronize_session=False)
        )
        return int(getattr(requeued, "rowcount", 0) or 0)

    async def cancel(self, tenant_id: str, message_id: uuid.UUID) -> OutboundMessage:
        """Cancel a message that is not delivered yet."""
        return await self._transition(
            tenant_id,
            message_id,
            from_statuses=CANCELLABLE_STATUSES,
            values={
                "status": OutboundStatus.CANCELLED,
                "next_attempt_at": None,
                "lease_expires_at": None,
                "lease_owner": None,
            },
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

    # --- pause and resume -------------------------------------------------------------------------------

    async def pause(self, tenant_id: str, now: datetime) -> datetime:
        """Pause the tenant's outbound delivery (kept as is when already paused); since when."""
        paused_at = await self._session.scalar(
            update(Tenant)
            .where(Tenant.id == tenant_id)
            .values(outbound_paused_at=func.coalesce(Tenant.outbound_paused_at, now))
            .returning(Tenant.outbound_paused_at)
            .execution_options(synchronize_session=False)
        )
        if paused_at is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        return paused_at

    async def resume(self, tenant_id: str) -> None:
        """Resume the tenant's outbound delivery (a no-op when it was not paused)."""
        resumed = await self._session.scalar(
            update(Tenant)
            .where(Tenant.id == tenant_id)
            .values(outbound_paused_at=None)
            .returning(Tenant.id)
            .execution_options(synchronize_session=False)
        )
        if resumed is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
