"""`POST /mparticle/firehose`: the one URL mParticle calls for every Firehose message (CONTRACT §2)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from proxy.firehose.service import ENQUEUE_TIMEOUT_SECONDS, FirehoseCall, handle_firehose_call, now_ms
from proxy.request_body import read_limited_body
from proxy.state import ProxyState
from shared.inbound.responses import (
    AudienceMembershipChangeResponse,
    AudienceSubscriptionResponse,
    DsrProcessingResponse,
    EventProcessingResponse,
    ModuleRegistrationResponse,
    encode_response,
)
from shared.queues.firehose import FirehoseQueue, GroupedEnqueuer

router = APIRouter(tags=["mparticle"])

AnyFirehoseResponse = (
    ModuleRegistrationResponse
    | EventProcessingResponse
    | AudienceSubscriptionResponse
    | AudienceMembershipChangeResponse
    | DsrProcessingResponse
)

_ERROR = {"content": {"application/json": {"example": {"error": {"code": "CODE", "message": "why"}}}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": AnyFirehoseResponse, "description": "the typed response, `id` echoing the request's"},
    400: {"description": "MALFORMED_JSON, INVALID_MESSAGE or UNKNOWN_MESSAGE_TYPE (not retried)", **_ERROR},
    401: {"description": "missing/invalid token, unknown or disconnected tenant, bad caller token", **_ERROR},
    413: {"description": "the body is larger than MAX_REQUEST_BYTES", **_ERROR},
    503: {"description": "QUEUE_UNAVAILABLE: the work could not be enqueued (mParticle retries)", **_ERROR},
}


def _state(request: Request) -> ProxyState:
    # Read directly rather than through the sync StateDep/SettingsDep dependencies: FastAPI runs
    # sync dependencies in a thread pool, a hop that costs more than the rest of this route's work.
    state: ProxyState = request.app.state.proxy
    return state


def _enqueuer(request: Request) -> GroupedEnqueuer:
    """The app's Firehose enqueuer, made on first use (it groups the round trips of concurrent
    requests, so there is one per app)."""
    enqueuer: GroupedEnqueuer | None = getattr(request.app.state, "firehose_enqueuer", None)
    if enqueuer is None:
        state = _state(request)
        enqueuer = GroupedEnqueuer(
            FirehoseQueue(state.redis, state.settings.queue_name), timeout_seconds=ENQUEUE_TIMEOUT_SECONDS
        )
        request.app.state.firehose_enqueuer = enqueuer
    return enqueuer


async def read_firehose_call(request: Request) -> FirehoseCall:
    """The call as received; the body is refused with 413 beyond MAX_REQUEST_BYTES."""
    body = await read_limited_body(request, _state(request).settings.max_request_bytes)
    return FirehoseCall(body, request.headers.get("authorization"), now_ms())


@router.post(
    "/mparticle/firehose",
    response_model=None,
    summary="mParticle Firehose endpoint (registration, events, audiences, DSR)",
    responses=RESPONSES,
)
async def receive_firehose_message(request: Request) -> Response:
    """Dispatch on the message `type`. Registration needs no authentication; every other message
    is authenticated by its account settings and answered 200 only once its work is in the queue.
    The body is read here rather than through FastAPI parameters: this is the hot path."""
    response = await handle_firehose_call(_state(request), _enqueuer(request), await read_firehose_call(request))
    # Rendered here: FastAPI's response_model path would validate the union once more per request.
    return Response(encode_response(response), media_type="application/json")
