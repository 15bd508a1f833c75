"""Admin routes: the incoming error log of a tenant (CONTRACT §4, §5) and its replay (§8)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import JSONResponse, Response

from proxy.admin.errorlog import replay, service
from proxy.admin.errorlog.schemas import (
    IncomingErrorDetail,
    IncomingErrorListQuery,
    IncomingErrorRead,
    PayloadFormat,
    ReplayCount,
    ReplayQuery,
)
from proxy.dependencies import SessionDep, StateDep
from proxy.openapi import error_responses
from proxy.pagination import DEFAULT_PAGE_LIMIT, CursorQuery, LimitQuery, Page
from shared.queues.firehose import FirehoseQueue

router = APIRouter(prefix="/tenants/{tenant_id}/incoming-errors", tags=["incoming errors"])

_NOT_FOUND_WORDING = "No such tenant or entry (or no payload)"
_NOT_FOUND = error_responses(404, descriptions={404: _NOT_FOUND_WORDING})


@router.get("", summary="List the tenant's incoming errors", responses=_NOT_FOUND)
async def list_incoming_errors(
    tenant_id: str,
    query: Annotated[IncomingErrorListQuery, Query()],
    session: SessionDep,
    limit: LimitQuery = DEFAULT_PAGE_LIMIT,
    cursor: CursorQuery = None,
) -> Page[IncomingErrorRead]:
    """Filter and sort the log; follow `next_cursor` (with the same sort) for the next page."""
    return await service.list_incoming_errors(session, tenant_id, query, limit=limit, cursor=cursor)


@router.get("/{entry_id}", summary="One incoming error with its payload", responses=_NOT_FOUND)
async def get_incoming_error(tenant_id: str, entry_id: str, session: SessionDep) -> IncomingErrorDetail:
    return await service.get_incoming_error(session, tenant_id, entry_id)


@router.get(
    "/{entry_id}/payload",
    summary="Download the payload as indented JSON (.json or .txt)",
    response_class=Response,
    responses={
        200: {"content": {"application/json": {}, "text/plain": {}}, "description": "The payload, as an attachment"},
        **_NOT_FOUND,
    },
)
async def download_payload(
    tenant_id: str,
    entry_id: str,
    session: SessionDep,
    payload_format: Annotated[PayloadFormat, Query(alias="format", description="json or txt")] = PayloadFormat.JSON,
) -> Response:
    download = await service.download_payload(session, tenant_id, entry_id, payload_format)
    return Response(
        content=download.body,
        media_type=download.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{download.filename}"',
            "Cache-Control": "no-store",
        },
    )


_REPLAY_REFUSED = error_responses(
    404, 409, descriptions={404: _NOT_FOUND_WORDING, 409: "NOT_REPLAYABLE (rejected by the proxy) or NO_PAYLOAD"}
)


@router.post(
    "/replay",
    summary="Replay every entry matching the list's filters (dry_run: only count)",
    status_code=202,
    responses={200: {"model": ReplayCount, "description": "dry run: how many would be replayed"}, **_NOT_FOUND},
)
async def replay_matching(
    tenant_id: str, query: Annotated[ReplayQuery, Query()], session: SessionDep, state: StateDep
) -> Response:
    """Queue the requests of the matching entries (with a stored payload, not rejected by the
    proxy) for the worker to apply again with the current configuration."""
    queue = FirehoseQueue(state.redis, state.settings.queue_name)
    counted = await replay.replay_matching(session, queue, tenant_id, query)
    return JSONResponse(counted.model_dump(), status_code=200 if query.dry_run else 202)


@router.post(
    "/{entry_id}/replay",
    summary="Replay one logged request with the current configuration",
    status_code=202,
    responses=_REPLAY_REFUSED,
)
async def replay_entry(tenant_id: str, entry_id: str, session: SessionDep, state: StateDep) -> ReplayCount:
    """Queue the entry's request; the entry shows `replayed_at` and `replay_outcome` once applied."""
    return await replay.replay_entry(
        session, FirehoseQueue(state.redis, state.settings.queue_name), tenant_id, entry_id
    )
