"""Outbound API and outbound message administration: store or skip calls, kick the worker, and
list, show, retry (one, or every failed one matching a filter) and cancel messages, pause and
resume a tenant's delivery.

Accepted calls go through the proxy's OutboxWriter (group commit: the 202 follows the commit of
the batch holding the message); the administration functions flush at most and the routes commit.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from proxy.admin.messages.schemas import (
    AttemptRead,
    OutboundMessageDetail,
    OutboundMessageQuery,
    OutboundMessageRead,
    OutboundPauseRead,
)
from proxy.outbound.delivery_kicker import kick_delivery
from proxy.outbound.engine_auth import EngineCaller
from proxy.outbound.schemas import (
    CustomerUpdateRequest,
    EventRequest,
    MarketingCommunicationRequest,
    OutboundAccepted,
)
from proxy.pagination import Page, cursor_position, page_of
from shared.errors import NotFound
from shared.logging import get_logger
from shared.mapping.outbound import (
    OutboundDraft,
    customer_update_draft,
    event_draft,
    marketing_communication_draft,
)
from shared.outbound.accepted_messages import AcceptedMessage
from shared.outbound.administration import MessageFilter, OutboundMessageAdmin
from shared.tenants.config import OutboundConfig, TenantConfig

__all__ = [
    "accept_customer_update",
    "accept_event",
    "accept_marketing_communication",
    "cancel_message",
    "get_message",
    "kick_delivery",
    "list_messages",
    "message_filter",
    "pause_delivery",
    "resume_delivery",
    "retry_failed_matching",
    "retry_message",
]

logger = get_logger(__name__)


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
    logger.info("outbound_message_accepted", tenant_id=message.tenant_id, message_id=str(message.id), kind=draft.kind)
    return OutboundAccepted(message_id=message.id, status="queued")


async def accept_customer_update(caller: EngineCaller, request: CustomerUpdateRequest) -> OutboundAccepted:
    """Store a customer update: identities plus the synced user attributes."""
    tenant = caller.tenant
    draft = customer_update_draft(request.customer, _outbound(tenant), tenant.sync_fields, _new_id)
    return await _store(caller, draft)


def _occurred_at_ms(occurred_at_ms: int | None, now: datetime | None) -> int:
    """The call's `occurred_at`, defaulting to when it is accepted."""
    return occurred_at_ms if occurred_at_ms is not None else int((now or _now()).timestamp() * 1000)


async def accept_event(caller: EngineCaller, request: EventRequest, *, now: datetime | None = None) -> OutboundAccepted:
    """Store a loyalty event as custom event(s), or skip it when no external event maps its action."""
    tenant = caller.tenant
    draft = event_draft(
        request.customer,
        request.action,
        request.data,
        _occurred_at_ms(request.occurred_at, now),
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
    draft = marketing_communication_draft(
        request.customer,
        request.event_name,
        request.event_type,
        request.data,
        _occurred_at_ms(request.occurred_at, now),
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


def message_filter(query: OutboundMessageQuery) -> MessageFilter:
    """The repository filter of the list's query parameters."""
    return MessageFilter(
        statuses=None if query.status is None else [query.status],
        kind=query.kind,
        customer_id=query.customer_id,
        created_from=query.created_from,
        created_to=query.created_to,
        last_status_code=query.last_status_code,
    )


async def list_messages(
    session: AsyncSession, tenant_id: str, matching: MessageFilter, *, limit: int, cursor: str | None
) -> Page[OutboundMessageRead]:
    """A page of the tenant's messages that match, newest first."""
    admin = OutboundMessageAdmin(session)
    await admin.require_tenant(tenant_id)
    rows = await admin.list_messages(
        tenant_id,
        matching,
        before_sequence=cursor_position(cursor, int, boxed=True),
        limit=limit + 1,
    )
    return page_of(rows, limit, OutboundMessageRead.model_validate, lambda message: [message.sequence])


async def get_message(session: AsyncSession, tenant_id: str, message_id: str) -> OutboundMessageDetail:
    """One message with its batch and attempt log."""
    admin = OutboundMessageAdmin(session)
    message = await admin.get_message(tenant_id, parse_message_id(message_id))
    attempts = await admin.attempt_log(message.id)
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
    message = await OutboundMessageAdmin(session).requeue_failed(tenant_id, parse_message_id(message_id), now or _now())
    logger.info("outbound_message_requeued", tenant_id=tenant_id, message_id=str(message.id))
    return OutboundMessageRead.model_validate(message)


async def retry_failed_matching(
    session: AsyncSession,
    tenant_id: str,
    message_filter: MessageFilter,
    *,
    dry_run: bool,
    now: datetime | None = None,
) -> int:
    """How many `failed` messages match the filter (dry run), or were put back in the queue. Only
    failed messages are taken, whatever the filter's status. The caller commits, then kicks delivery."""
    admin = OutboundMessageAdmin(session)
    await admin.require_tenant(tenant_id)
    if dry_run:
        return await admin.count_failed_matching(tenant_id, message_filter)
    count = await admin.requeue_failed_matching(tenant_id, message_filter, now or _now())
    logger.info("outbound_messages_requeued_by_filter", tenant_id=tenant_id, count=count)
    return count


async def cancel_message(session: AsyncSession, tenant_id: str, message_id: str) -> OutboundMessageRead:
    """Cancel a message that is not delivered yet (409 once delivered or already cancelled)."""
    message = await OutboundMessageAdmin(session).cancel(tenant_id, parse_message_id(message_id))
    logger.info("outbound_message_cancelled", tenant_id=tenant_id, message_id=str(message.id))
    return OutboundMessageRead.model_validate(message)


async def pause_delivery(session: AsyncSession, tenant_id: str, *, now: datetime | None = None) -> OutboundPauseRead:
    """Pause the tenant's outbound delivery: calls are still accepted and wait, in order."""
    paused_at = await OutboundMessageAdmin(session).pause(tenant_id, now or _now())
    logger.info("outbound_delivery_paused", tenant_id=tenant_id)
    return OutboundPauseRead(tenant_id=tenant_id, paused=True, outbound_paused_at=paused_at)


async def resume_delivery(session: AsyncSession, tenant_id: str) -> OutboundPauseRead:
    """Resume the tenant's outbound delivery; the caller commits, then kicks delivery."""
    await OutboundMessageAdmin(session).resume(tenant_id)
    logger.info("outbound_delivery_resumed", tenant_id=tenant_id)
    return OutboundPauseRead(tenant_id=tenant_id, paused=False, outbound_paused_at=None)
