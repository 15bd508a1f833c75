"""Admin routes: outbound messages and the resend queue (CONTRACT §5). The admin key is checked by
the admin router; every query is scoped by the tenant in the path."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from proxy.admin.messages.schemas import OutboundKind, OutboundMessageDetail, OutboundMessageRead, OutboundStatus
from proxy.dependencies import SessionDep, StateDep
from proxy.outbound import service as outbound_service
from proxy.pagination import DEFAULT_PAGE_LIMIT, CursorQuery, LimitQuery, Page

_ERROR = {"content": {"application/json": {"example": {"error": {"code": "CODE", "message": "why"}}}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown tenant or message", **_ERROR}}
_CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "the message is not in a state for that", **_ERROR}}

router = APIRouter(tags=["outbound messages"], responses=_NOT_FOUND)

StatusQuery = Annotated[OutboundStatus | None, Query(description="only messages in this status")]
KindQuery = Annotated[OutboundKind | None, Query(description="only messages of this kind")]
CustomerQuery = Annotated[str | None, Query(description="only this customer's messages")]


@router.get(
    "/tenants/{tenant_id}/outbound/messages",
    response_model=Page[OutboundMessageRead],
    summary="Outbound messages, newest first",
)
async def list_outbound_messages(
    tenant_id: str,
    session: SessionDep,
    status: StatusQuery = None,
    kind: KindQuery = None,
    customer_id: CustomerQuery = None,
    limit: LimitQuery = DEFAULT_PAGE_LIMIT,
    cursor: CursorQuery = None,
) -> Page[OutboundMessageRead]:
    return await outbound_service.list_messages(
        session,
        tenant_id,
        statuses=None if status is None else [status],
        kind=kind,
        customer_id=customer_id,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/tenants/{tenant_id}/resend-queue",
    response_model=Page[OutboundMessageRead],
    summary="Messages waiting for a resend (`retrying`), newest first",
)
async def list_resend_queue(
    tenant_id: str,
    session: SessionDep,
    kind: KindQuery = None,
    customer_id: CustomerQuery = None,
    limit: LimitQuery = DEFAULT_PAGE_LIMIT,
    cursor: CursorQuery = None,
) -> Page[OutboundMessageRead]:
    return await outbound_service.list_messages(
        session, tenant_id, statuses=["retrying"], kind=kind, customer_id=customer_id, limit=limit, cursor=cursor
    )


@router.get(
    "/tenants/{tenant_id}/outbound/messages/{message_id}",
    response_model=OutboundMessageDetail,
    summary="One message with its S2S batch and attempt log",
)
async def get_outbound_message(tenant_id: str, message_id: str, session: SessionDep) -> OutboundMessageDetail:
    return await outbound_service.get_message(session, tenant_id, message_id)


@router.post(
    "/tenants/{tenant_id}/outbound/messages/{message_id}/retry",
    response_model=OutboundMessageRead,
    responses=_CONFLICT,
    summary="Put a failed message back in the queue (its attempt counter starts over)",
)
async def retry_outbound_message(
    tenant_id: str, message_id: str, session: SessionDep, state: StateDep
) -> OutboundMessageRead:
    message = await outbound_service.retry_message(session, tenant_id, message_id)
    await session.commit()
    await outbound_service.kick_delivery(state.queue, tenant_id)
    return message


@router.delete(
    "/tenants/{tenant_id}/outbound/messages/{message_id}",
    response_model=OutboundMessageRead,
    responses=_CONFLICT,
    summary="Cancel a message that is not delivered yet",
)
async def cancel_outbound_message(tenant_id: str, message_id: str, session: SessionDep) -> OutboundMessageRead:
    message = await outbound_service.cancel_message(session, tenant_id, message_id)
    await session.commit()
    return message
