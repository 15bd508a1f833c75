"""The loyalty engine's outbound API: `/api/v1/tenants/{tenant_id}/outbound/...` (CONTRACT §6).

Each call is stored (committed) before it is answered 202; the worker then delivers it to
mParticle S2S. A kick job makes that immediate; without Redis the worker's schedule finds it.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from proxy import outbound_service
from proxy.dependencies import SessionDep, StateDep
from proxy.engine_auth import EngineTenant
from proxy.outbound_schemas import (
    CustomerUpdateRequest,
    EventRequest,
    MarketingCommunicationRequest,
    OutboundAccepted,
)
from shared.errors import PayloadTooLarge

# Far above any call that can make a 128 KB batch, far below what could hurt the proxy.
OUTBOUND_MAX_BODY_BYTES = 1024 * 1024

_ERROR = {"content": {"application/json": {"example": {"error": {"code": "CODE", "message": "why"}}}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "UNAUTHORIZED: missing or unknown engine API key", **_ERROR},
    403: {"description": "FORBIDDEN: the key belongs to another tenant", **_ERROR},
    409: {"description": "NOT_CONNECTED: the tenant has no outbound settings", **_ERROR},
    413: {"description": "PAYLOAD_TOO_LARGE: the body is over 1 MiB", **_ERROR},
    422: {"description": "VALIDATION_FAILED, NO_IDENTITY or BATCH_TOO_LARGE (over 128 KB)", **_ERROR},
}

router = APIRouter(prefix="/tenants/{tenant_id}/outbound", tags=["outbound"], responses=RESPONSES)

BodyModel = TypeVar("BodyModel", bound=BaseModel)


def limited_json_body(model: type[BodyModel]) -> Any:
    """A dependency reading at most OUTBOUND_MAX_BODY_BYTES (413 beyond, in the error envelope)
    and validating the JSON with `model` (422 like any body). Declared after the engine key, so
    an unauthenticated call is refused before its body is read."""

    async def read(request: Request) -> BodyModel:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > OUTBOUND_MAX_BODY_BYTES:
            raise PayloadTooLarge(f"the body is larger than {OUTBOUND_MAX_BODY_BYTES} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > OUTBOUND_MAX_BODY_BYTES:
                raise PayloadTooLarge(f"the body is larger than {OUTBOUND_MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        try:
            return model.model_validate_json(b"".join(chunks))
        except ValidationError as exc:
            errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_input=False)]
            raise RequestValidationError(errors) from exc

    return Depends(read)


def _documented_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


@router.post(
    "/customer-updates",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OutboundAccepted,
    summary="Send a customer's synced attributes to mParticle",
    openapi_extra=_documented_body(CustomerUpdateRequest),
)
async def post_customer_update(
    tenant: EngineTenant,
    body: Annotated[CustomerUpdateRequest, limited_json_body(CustomerUpdateRequest)],
    session: SessionDep,
    state: StateDep,
) -> OutboundAccepted:
    accepted = await outbound_service.accept_customer_update(session, tenant, body)
    await session.commit()
    await outbound_service.kick_delivery(state.queue, tenant.id)
    return accepted


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OutboundAccepted,
    summary="Send a loyalty event as a custom event (skipped unless an external event maps its action)",
)
async def post_event(
    tenant: EngineTenant,
    body: Annotated[EventRequest, limited_json_body(EventRequest)],
    session: SessionDep,
    state: StateDep,
) -> OutboundAccepted:
    accepted = await outbound_service.accept_event(session, tenant, body)
    if accepted.message_id is not None:
        await session.commit()
        await outbound_service.kick_delivery(state.queue, tenant.id)
    return accepted


@router.post(
    "/marketing-communications",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OutboundAccepted,
    summary="Trigger a marketing communication: one custom event with `data` as its attributes",
    openapi_extra=_documented_body(MarketingCommunicationRequest),
)
async def post_marketing_communication(
    tenant: EngineTenant,
    body: Annotated[MarketingCommunicationRequest, limited_json_body(MarketingCommunicationRequest)],
    session: SessionDep,
    state: StateDep,
) -> OutboundAccepted:
    accepted = await outbound_service.accept_marketing_communication(session, tenant, body)
    await session.commit()
    await outbound_service.kick_delivery(state.queue, tenant.id)
    return accepted
