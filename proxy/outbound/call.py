"""The one dependency of each outbound API route: an authenticated caller and its validated body.

Authentication comes first (401/403/409, so an unauthenticated call is refused before its body is
read), then at most OUTBOUND_MAX_BODY_BYTES are read (413 beyond) and validated with the route's
schema (422 like any body). One dependency rather than three (key, body, process state): FastAPI
spends tens of microseconds on every dependency of every request, a large share of the outbound
API's cost (profiled with `make bench`). It is declared as a security scheme, so OpenAPI still
shows the engine key as a bearer scheme.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from pydantic import BaseModel, ValidationError

from proxy.outbound.engine_auth import EngineCaller, authenticate_engine_caller
from proxy.request_body import read_limited_body

# Far above any call that can make a 128 KB batch, far below what could hurt the proxy.
OUTBOUND_MAX_BODY_BYTES = 1024 * 1024

BodyModel = TypeVar("BodyModel", bound=BaseModel)


@dataclass(frozen=True)
class OutboundCall(Generic[BodyModel]):
    """An authenticated outbound API call and its validated body."""

    caller: EngineCaller
    body: BodyModel


async def read_json_body(request: Request, model: type[BodyModel]) -> BodyModel:
    """At most OUTBOUND_MAX_BODY_BYTES of JSON (413 beyond, in the error envelope) validated with `model`."""
    body = await read_limited_body(request, OUTBOUND_MAX_BODY_BYTES)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_input=False)]
        raise RequestValidationError(errors) from exc


class OutboundCallReader(SecurityBase, Generic[BodyModel]):
    """`Depends(OutboundCallReader(Schema))`: the route's OutboundCall (see the module docstring)."""

    def __init__(self, body_model: type[BodyModel]) -> None:
        self.model = HTTPBearerModel(description="The tenant's engine API key")
        self.scheme_name = "EngineKey"
        self._body_model = body_model

    async def __call__(self, request: Request) -> OutboundCall[BodyModel]:
        # The route's `{tenant_id}`, read as is: a declared path parameter costs FastAPI a
        # validation per request (the routes document it in their OpenAPI `parameters`).
        caller = await authenticate_engine_caller(request, request.path_params["tenant_id"])
        return OutboundCall(caller, await read_json_body(request, self._body_model))
