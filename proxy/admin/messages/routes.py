"""Admin routes: outbound messages and the resend queue (CONTRACT §5), retry by filter and pause /
resume of a tenant's delivery (CONTRACT §8). The admin key is checked by the admin router; every
query is scoped by the tenant in the path."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse

from proxy.admin.messages.schemas import (
    OutboundKind,
    OutboundMessageDetail,
    OutboundMessageQuery,
    OutboundMessageRead,
    OutboundPauseRead,
    OutboundStatus,
    RetryCount,
)
from proxy.dependencies import SessionDep, StateDep
from proxy.openapi import error_responses
from proxy.outbound import service as outbound_service
from proxy.pagination import DEFAULT_PAGE_LIMIT, CursorQuery, LimitQuery, Page
from shared.outbound.administration import MessageFilter

_NOT_FOUND = error_responses(404, descriptions={404: "unknown tenant or message"})
_CONFLICT = error_responses(409, descriptions={409: "the message is not in a state for that"})

router = APIRouter(tags=["outbound messages"], responses=_NOT_FOUND)

ListQuery = Annotated[OutboundMessageQuery, Query()]
DryRunQuery = Annotated[bool, Query(description="only count the failed messages that match")]
KindQuery = Annotated[OutboundKind | None, Query(description="only messages of this kind")]
CustomerQuery = Annotated[str | None, Query(description="only this customer's messages")]


@router.get("/tenants/{tenant_id}/outbound/messages", summary="Outbound messages, newest first")
async def list_outbound_messages(
    tenant_id: str,
    session: SessionDep,
    query: ListQuery,
    limit: LimitQuery = DEFAULT_PAGE_LIMIT,
    cursor: CursorQuery = None,
) -> Page[OutboundMessageRead]:
    return await outbound_service.list_messages(
        session, tenant_id, outbound_service.message_filter(query), limit=limit, cursor=cursor
    )


@router.post(
    "/tenants/{tenant_id}/outbound/messages/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RetryCount,
    responses={200: {"description": "dry run: how many failed messages match", "model": RetryCount}},
    summary="Put every failed message matching the list's filters back in the queue (202), or count them (dry_run)",
)
async def retry_outbound_messages(
    tenant_id: str, session: SessionDep, state: StateDep, query: ListQuery, dry_run: DryRunQuery = False
) -> JSONResponse:
    count = await outbound_service.retry_failed_matching(
        session, tenant_id, outbound_service.message_filter(query), dry_run=dry_run
    )
    if dry_run:
        return JSONResponse({"count": count}, status_code=status.HTTP_200_OK)
    await session.commit()
    if count:
        await outbound_service.kick_delivery(state.queue, tenant_id)
    return JSONResponse({"count": count}, status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/tenants/{tenant_id}/outbound/pause",
    summary="Pause the tenant's outbound delivery: calls are still accepted (202) and wait",
)
async def pause_outbound_delivery(tenant_id: str, session: SessionDep) -> OutboundPauseRead:
    paused = await outbound_service.pause_delivery(session, tenant_id)
    await session.commit()
    return paused


@router.post(
    "/tenants/{tenant_id}/outbound/resume",
    summary="Resume the tenant's outbound delivery: the waiting messages are delivered, in order",
)
async def resume_outbound_delivery(tenant_id: str, session: SessionDep, state: StateDep) -> OutboundPauseRead:
    resumed = await outbound_service.resume_delivery(session, tenant_id)
    await session.commit()
    await outbound_service.kick_delivery(state.queue, tenant_id)
    return resumed


@router.get("/tenants/{tenant_id}/resend-queue", summary="Messages waiting for a resend (`retrying`), newest first")
async def list_resend_queue(
    tenant_id: str,
    session: SessionDep,
    kind: KindQuery = None,
    customer_id: CustomerQuery = None,
    limit: LimitQuery = DEFAULT_PAGE_LIMIT,
    cursor: CursorQuery = None,
) -> Page[OutboundMessageRead]:
    resend_queue = MessageFilter(statuses=[OutboundStatus.RETRYING], kind=kind, customer_id=customer_id)
    return await outbound_service.list_messages(session, tenant_id, resend_queue, limit=limit, cursor=cursor)


@router.get(
    "/tenants/{tenant_id}/outbound/messages/{message_id}",
    summary="One message with its S2S batch and attempt log",
)
async def get_outbound_message(tenant_id: str, message_id: str, session: SessionDep) -> OutboundMessageDetail:
    return await outbound_service.get_message(session, tenant_id, message_id)


@router.post(
    "/tenants/{tenant_id}/outbound/messages/{message_id}/retry",
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
    responses=_CONFLICT,
    summary="Cancel a message that is not delivered yet",
)
async def cancel_outbound_message(tenant_id: str, message_id: str, session: SessionDep) -> OutboundMessageRead:
    message = await outbound_service.cancel_message(session, tenant_id, message_id)
    await session.commit()
    return message
