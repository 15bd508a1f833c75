"""The loyalty engine's outbound API: `/api/v1/tenants/{tenant_id}/outbound/...` (CONTRACT §6).

Each call is stored (committed, by the proxy's group-commit OutboxWriter) before it is answered
202; the worker then delivers it to mParticle S2S. A kick job makes that immediate; without Redis
the worker's schedule finds it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel

from proxy.outbound import service as outbound_service
from proxy.outbound.call import OutboundCall, OutboundCallReader
from proxy.outbound.schemas import (
    CustomerUpdateRequest,
    EventRequest,
    MarketingCommunicationRequest,
    OutboundAccepted,
)
from proxy.responses import JSONBytesResponse

_ERROR = {"content": {"application/json": {"example": {"error": {"code": "CODE", "message": "why"}}}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "UNAUTHORIZED: missing or unknown engine API key", **_ERROR},
    403: {"description": "FORBIDDEN: the key belongs to another tenant", **_ERROR},
    409: {"description": "NOT_CONNECTED: the tenant has no outbound settings", **_ERROR},
    413: {"description": "PAYLOAD_TOO_LARGE: the body is over 1 MiB", **_ERROR},
    422: {"description": "VALIDATION_FAILED, NO_IDENTITY or BATCH_TOO_LARGE (over 128 KB)", **_ERROR},
    503: {"description": "DATABASE_UNAVAILABLE: the call could not be stored now; retry", **_ERROR},
}

router = APIRouter(prefix="/tenants/{tenant_id}/outbound", tags=["outbound"], responses=RESPONSES)


def _accepted(accepted: OutboundAccepted) -> JSONBytesResponse:
    """The 202, rendered directly: `response_model` documents it, and re-validating a model the
    service just built cost the hot path ~10 us per call."""
    return JSONBytesResponse(
        {"message_id": accepted.message_id, "status": accepted.status}, status_code=status.HTTP_202_ACCEPTED
    )


def _documented(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI of what OutboundCallReader reads by hand: the `tenant_id` path parameter and the body."""
    return {
        "parameters": [
            {
                "name": "tenant_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "the tenant id",
            }
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}},
    }


@router.post(
    "/customer-updates",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OutboundAccepted,
    summary="Send a customer's synced attributes to mParticle",
    openapi_extra=_documented(CustomerUpdateRequest),
)
async def post_customer_update(
    call: Annotated[OutboundCall[CustomerUpdateRequest], Depends(OutboundCallReader(CustomerUpdateRequest))],
) -> JSONBytesResponse:
    return _accepted(await outbound_service.accept_customer_update(call.caller, call.body))


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OutboundAccepted,
    summary="Send a loyalty event as a custom event (skipped unless an external event maps its action)",
    openapi_extra=_documented(EventRequest),
)
async def post_event(
    call: Annotated[OutboundCall[EventRequest], Depends(OutboundCallReader(EventRequest))],
) -> JSONBytesResponse:
    return _accepted(await outbound_service.accept_event(call.caller, call.body))


@router.post(
    "/marketing-communications",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OutboundAccepted,
    summary="Trigger a marketing communication: one custom event with `data` as its attributes",
    openapi_extra=_documented(MarketingCommunicationRequest),
)
async def post_marketing_communication(
    call: Annotated[
        OutboundCall[MarketingCommunicationRequest], Depends(OutboundCallReader(MarketingCommunicationRequest))
    ],
) -> JSONBytesResponse:
    return _accepted(await outbound_service.accept_marketing_communication(call.caller, call.body))
