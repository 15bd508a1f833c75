"""The loyalty engine's outbound API: `/api/v1/tenants/{tenant_id}/outbound/...` (CONTRACT §6).

Each call is stored (committed, by the proxy's group-commit OutboxWriter) before it is answered
202; the worker then delivers it to mParticle S2S. A kick job makes that immediate; without Redis
the worker's schedule finds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel

from proxy.openapi import error_responses
from proxy.outbound import service as outbound_service
from proxy.outbound.call import OutboundCall, OutboundCallReader
from proxy.outbound.engine_auth import EngineCaller
from proxy.outbound.schemas import (
    CustomerUpdateRequest,
    EventRequest,
    MarketingCommunicationRequest,
    OutboundAccepted,
)
from proxy.responses import JSONBytesResponse
from shared.observability.metrics import OUTBOUND_ACCEPTED

# No 404: an unknown tenant is answered 403 (FORBIDDEN), so a key learns nothing about tenants.
RESPONSES: dict[int | str, dict[str, Any]] = error_responses(
    403,
    409,
    413,
    422,
    429,
    503,
    descriptions={
        401: "UNAUTHORIZED: missing or unknown engine API key",
        409: "NOT_CONNECTED: the tenant has no outbound settings",
        413: "PAYLOAD_TOO_LARGE: the body is over 1 MiB",
        422: "VALIDATION_FAILED, NO_IDENTITY or BATCH_TOO_LARGE (over 128 KB)",
        429: "RATE_LIMITED: over the tenant's OUTBOUND_RATE_LIMIT_PER_SECOND; retry after `Retry-After` seconds",
        503: "DATABASE_UNAVAILABLE: the call could not be stored now; retry",
    },
)

router = APIRouter(prefix="/tenants/{tenant_id}/outbound", tags=["outbound"], responses=RESPONSES)

BodyT = TypeVar("BodyT", bound=BaseModel)


def _accepted(accepted: OutboundAccepted) -> JSONBytesResponse:
    """The 202, rendered directly: `response_model` documents it, and re-validating a model the
    service just built cost the hot path ~10 us per call."""
    OUTBOUND_ACCEPTED.inc()
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


def _add_call_route(
    path: str,
    name: str,
    summary: str,
    body_model: type[BodyT],
    accept: Callable[[EngineCaller, BodyT], Awaitable[OutboundAccepted]],
) -> None:
    """One outbound API route: read and authenticate the call, let `accept` store (or skip) it, answer 202."""

    # The dependency as a default: the module's annotations are strings, which cannot name `body_model`.
    async def endpoint(call: OutboundCall[Any] = Depends(OutboundCallReader(body_model))) -> JSONBytesResponse:
        return _accepted(await accept(call.caller, call.body))

    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        name=name,
        status_code=status.HTTP_202_ACCEPTED,
        response_model=OutboundAccepted,
        summary=summary,
        openapi_extra=_documented(body_model),
    )


_add_call_route(
    "/customer-updates",
    "post_customer_update",
    "Send a customer's synced attributes to mParticle",
    CustomerUpdateRequest,
    outbound_service.accept_customer_update,
)
_add_call_route(
    "/events",
    "post_event",
    "Send a loyalty event as a custom event (skipped unless an external event maps its action)",
    EventRequest,
    outbound_service.accept_event,
)
_add_call_route(
    "/marketing-communications",
    "post_marketing_communication",
    "Trigger a marketing communication: one custom event with `data` as its attributes",
    MarketingCommunicationRequest,
    outbound_service.accept_marketing_communication,
)
