"""Outbound API and outbound message administration: store or skip calls, kick the worker, and
list, show, retry and cancel messages.

Accepted calls go through the proxy's OutboxWriter (group commit: the 202 follows the commit of
the batch holding the message); the administration functions flush at most and the routes commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from proxy.admin.messages.schemas import AttemptRead, OutboundMessageDetail, OutboundMessageRead
from proxy.outbound.delivery_kicker import kick_delivery
from proxy.outbound.engine_auth import EngineCaller
from proxy.outbound.schemas import (
    CustomerUpdateRequest,
    EventRequest,
    MarketingCommunicationRequest,
    OutboundAccepted,
)
from proxy.pagination import Page, decode_cursor, encode_cursor
from shared.errors import NotFound, Unprocessable
from shared.mapping.outbound import (
    OutboundDraft,
    customer_update_draft,
    event_draft,
    marketing_communication_draft,
)
from shared.outbound.accepted_messages import AcceptedMessage
from shared.outbound.messages import OutboundMessageRepository
from shared.tenants.config import OutboundConfig, TenantConfig

__all__ = [
    "accept_customer_update",
    "accept_event",
    "accept_marketing_communication",
    "cancel_message",
    "get_message",
    "kick_delivery",
    "list_messages",
    "retry_message",
]

logger = logging.getLogger(__name__)


def _new_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


def _outbound(tenant: TenantConfig) -> OutboundConfig:
    if tenant.outbound is None:  # authenticate_engine_caller guarantees it; keeps mypy honest
        raise RuntimeError("tenant without outbound settings reached the outbound service")
    return tenant.outbound


async def _store(caller: EngineCaller, draft: OutboundDraft) -> OutboundAccepted:
    message = AcceptedMessage(
        id=uuid.uuid4(),
        tenant_id=caller.tenant.id,
        engine_key_hash=caller.engine_key_hash,
        kind=draft.kind,
        customer_id=draft.customer_id,
        batch_json=orjson.dumps(draft.batch).decode(),
    )
    if not await caller.outbox.submit(message):
        raise await caller.refusal()
    logger.info(
        "outbound message accepted tenant_id=%s message_id=%s kind=%s", message.tenant_id, message.id, draft.kind
    )
    return OutboundAccepted(message_id=message.id, status="queued")


async def accept_customer_update(caller: EngineCaller, request: CustomerUpdateRequest) -> OutboundAccepted:
    """Store a customer update: identities plus the synced user attributes."""
    tenant = caller.tenant
    draft = customer_update_draft(request.customer, _outbound(tenant), tenant.sync_fields, _new_id)
    return await _store(caller, draft)


async def accept_event(caller: EngineCaller, request: EventRequest, *, now: datetime | None = None) -> OutboundAccepted:
    """Store a loyalty event as custom event(s), or skip it when no external event maps its action."""
    tenant = caller.tenant
    now = now or _now()
    occurred_at_ms = request.occurred_at if request.occurred_at is not None else int(now.timestamp() * 1000)
    draft = event_draft(
        request.customer,
        request.action,
        request.data,
        occurred_at_ms,
        _outbound(tenant),
        tenant.external_events,
        _new_id,
    )
    if draft is None:
        return OutboundAccepted(message_id=None, status="skipped")
    return await _store(caller, draft)


async def accept_marketing_communication(
    caller: EngineCaller, request: MarketingCommunicationRequest, *, now: datetime | None = None
) -> OutboundAccepted:
    """Store a "Trigger marketing communication" custom event."""
    tenant = caller.tenant
    now = now or _now()
    occurred_at_ms = request.occurred_at if request.occurred_at is not None else int(now.timestamp() * 1000)
    draft = marketing_communication_draft(
        request.customer,
        request.event_name,
        request.event_type,
        request.data,
        occurred_at_ms,
        _outbound(tenant),
        _new_id,
    )
    return await _store(caller, draft)


# --- administration -------------------------------------------------------------------------------


def parse_message_id(message_id: str) -> uuid.UUID:
    """A malformed id names no message: 404."""
    try:
        return uuid.UUID(message_id)
    except ValueError as exc:
        raise NotFound(f"outbound message {message_id!r} not found") from exc


def _cursor_sequence(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    position = decode_cursor(cursor)
    if not (isinstance(position, list) and len(position) == 1 and type(position[0]) is int):
        raise Unprocessable("invalid cursor")
    value: int = position[0]
    return value


async def list_messages(
    session: AsyncSession,
    tenant_id: str,
    *,
    statuses: Sequence[str] | None,
    kind: str | None,
    customer_id: str | None,
    limit: int,
    cursor: str | None,
) -> Page[OutboundMessageRead]:
    """A page of the tenant's messages, newest first."""
    repository = OutboundMessageRepository(session)
    if not await repository.tenant_exists(tenant_id):
        raise NotFound(f"tenant {tenant_id!r} not found")
    rows = await repository.list_messages(
        tenant_id,
        statuses=statuses,
        kind=kind,
        customer_id=customer_id,
        before_sequence=_cursor_sequence(cursor),
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[OutboundMessageRead](
        items=[OutboundMessageRead.model_validate(row) for row in rows],
        next_cursor=encode_cursor([rows[-1].sequence]) if more and rows else None,
    )


async def get_message(session: AsyncSession, tenant_id: str, message_id: str) -> OutboundMessageDetail:
    """One message with its batch and attempt log."""
    repository = OutboundMessageRepository(session)
    message = await repository.get_message(tenant_id, parse_message_id(message_id))
    attempts = await repository.attempt_log(message.id)
    summary = OutboundMessageRead.model_validate(message)
    return OutboundMessageDetail(
        **summary.model_dump(),
        batch=message.batch,
        attempt_log=[AttemptRead.model_validate(attempt) for attempt in attempts],
    )


async def retry_message(
    session: AsyncSession, tenant_id: str, message_id: str, *, now: datetime | None = None
) -> OutboundMessageRead:
    """Put a `failed` message back in the queue (409 otherwise); its attempt counter starts over."""
    message = await OutboundMessageRepository(session).requeue_failed(
        tenant_id, parse_message_id(message_id), now or _now()
    )
    logger.info("outbound message requeued tenant_id=%s message_id=%s", tenant_id, message.id)
    return OutboundMessageRead.model_validate(message)


async def cancel_message(session: AsyncSession, tenant_id: str, message_id: str) -> OutboundMessageRead:
    """Cancel a message that is not delivered yet (409 once delivered or already cancelled)."""
    message = await OutboundMessageRepository(session).cancel(tenant_id, parse_message_id(message_id))
    logger.info("outbound message cancelled tenant_id=%s message_id=%s", tenant_id, message.id)
    return OutboundMessageRead.model_validate(message)
