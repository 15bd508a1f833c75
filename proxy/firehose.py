"""`POST /mparticle/firehose`: the one URL mParticle calls for every Firehose message (CONTRACT §2)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request

from proxy.dependencies import SettingsDep, StateDep
from proxy.firehose_service import FirehoseCall, handle_firehose_call, now_ms
from shared.errors import PayloadTooLarge
from shared.firehose.responses import (
    AudienceMembershipChangeResponse,
    AudienceSubscriptionResponse,
    DsrProcessingResponse,
    EventProcessingResponse,
    FirehoseResponse,
    ModuleRegistrationResponse,
)

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
    400: {"description": "MALFORMED_JSON, INVALID_MESSAGE or UNKNOWN_MESSAGE_TYPE (not retried)", **_ERROR},
    401: {"description": "missing/invalid token, unknown or disconnected tenant, bad caller token", **_ERROR},
    413: {"description": "the body is larger than MAX_REQUEST_BYTES", **_ERROR},
    503: {"description": "QUEUE_UNAVAILABLE: the work could not be enqueued (mParticle retries)", **_ERROR},
}


async def read_limited_body(request: Request, settings: SettingsDep) -> bytes:
    """The request body, refused with 413 beyond MAX_REQUEST_BYTES: by its declared length when
    there is one, else by counting while reading (chunked bodies)."""
    limit = settings.max_request_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


FirehoseBody = Annotated[bytes, Depends(read_limited_body)]


@router.post(
    "/mparticle/firehose",
    response_model=AnyFirehoseResponse,
    response_model_exclude_none=True,
    summary="mParticle Firehose endpoint (registration, events, audiences, DSR)",
    responses=RESPONSES,
)
async def receive_firehose_message(
    body: FirehoseBody,
    state: StateDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> FirehoseResponse:
    """Dispatch on the message `type`. Registration needs no authentication; every other message
    is authenticated by its account settings and answered 200 only once its work is in the queue."""
    return await handle_firehose_call(state, FirehoseCall(body, authorization, now_ms()))
