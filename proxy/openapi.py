"""The OpenAPI truth about errors: one helper documents error statuses, one pass gives every
documented error the envelope's schema.

Every error any route answers is `{"error": {"code", "message"}}` (proxy/exception_handlers.py).
`error_responses(...)` is what routers and routes declare; `install_openapi` makes sure each 4xx/5xx
of the generated document (also those declared by hand) points at the ErrorResponse schema, so a
client (or schemathesis) can check error bodies too.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from shared.errors import ErrorCode
from shared.inbound.schemas import REQUEST_MODELS

ERROR_RESPONSE_REF = "#/components/schemas/ErrorResponse"
FIREHOSE_PATH = "/mparticle/firehose"
_REF_TEMPLATE = "#/components/schemas/{model}"


class ErrorDetail(BaseModel):
    code: ErrorCode
    message: str
    details: list[dict[str, Any]] | None = Field(default=None, description="422 only: `[{loc, msg}]` per problem")


class ErrorResponse(BaseModel):
    """The one error envelope of every route."""

    error: ErrorDetail


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "malformed or invalid request (`MALFORMED_JSON`, `INVALID_MESSAGE`, `UNKNOWN_MESSAGE_TYPE`)",
    401: "missing or invalid credentials (`UNAUTHORIZED`)",
    403: "the key belongs to another tenant (`FORBIDDEN`)",
    404: "unknown or malformed tenant id, or no such resource (`NOT_FOUND`)",
    409: "conflict: exists already (`CONFLICT`), not connected (`NOT_CONNECTED`), or not in a state for that",
    413: "the body is larger than the limit (`PAYLOAD_TOO_LARGE`)",
    422: "validation failed (`VALIDATION_FAILED`, `NO_IDENTITY`, `BATCH_TOO_LARGE`); `details` says where and why",
    429: "too many calls for this tenant (`RATE_LIMITED`); retry after `Retry-After` seconds",
    500: "a stored secret cannot be read with SECRET_KEY (`SECRET_UNREADABLE`), or an internal error",
    503: "a dependency is unavailable (`DATABASE_UNAVAILABLE`, `QUEUE_UNAVAILABLE`); retry later",
}

# What any route of the REST APIs (/api/v1) may answer besides its own successes.
API_ERROR_STATUSES = (401, 404, 409, 413, 422, 503)


def error_responses(*statuses: int, descriptions: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (401 always included), with the error envelope
    as their schema; `descriptions` overrides the standard wording of some of them."""
    wording = {**ERROR_DESCRIPTIONS, **(descriptions or {})}
    return {status: {"model": ErrorResponse, "description": wording[status]} for status in sorted({401, *statuses})}


def api_error_responses(*extra_statuses: int) -> dict[int | str, dict[str, Any]]:
    """The standard REST API errors (API_ERROR_STATUSES) plus `extra_statuses`."""
    return error_responses(*API_ERROR_STATUSES, *extra_statuses)


def install_openapi(app: FastAPI) -> None:
    """Generate the app's document once, with the error envelope schema on every error response."""

    def openapi() -> dict[str, Any]:  # FastAPI's own, plus the two passes below
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            document_error_bodies(document)
            document_firehose_body(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_component(document: dict[str, Any], name: str, model: type[BaseModel]) -> dict[str, Any]:
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    if name not in schemas:
        generated = model.model_json_schema(ref_template=_REF_TEMPLATE)
        for nested_name, nested in generated.pop("$defs", {}).items():
            schemas.setdefault(nested_name, nested)
        schemas[name] = generated
    return schemas


def document_firehose_body(document: dict[str, Any]) -> None:
    """The Firehose route reads its body by hand (the hot path): declare it, one message shape per `type`."""
    operation = document.get("paths", {}).get(FIREHOSE_PATH, {}).get("post")
    if operation is None or "requestBody" in operation:
        return
    variants = []
    for message_type, model in REQUEST_MODELS.items():
        schemas = _add_component(document, model.__name__, model)
        schemas[model.__name__]["properties"]["type"] = {"type": "string", "enum": [message_type.value]}
        variants.append({"$ref": _REF_TEMPLATE.format(model=model.__name__)})
    operation["requestBody"] = {
        "required": True,
        "description": "a Firehose message; `type` selects its shape (reference/notes/firehose.md)",
        "content": {"application/json": {"schema": {"oneOf": variants}}},
    }


def document_error_bodies(document: dict[str, Any]) -> None:
    """Point every 4xx/5xx response of `document` without a schema at ErrorResponse."""
    _add_component(document, "ErrorResponse", ErrorResponse)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if str(status)[:1] not in ("4", "5"):
                    continue
                media = response.setdefault("content", {}).setdefault("application/json", {})
                media.setdefault("schema", {"$ref": ERROR_RESPONSE_REF})
