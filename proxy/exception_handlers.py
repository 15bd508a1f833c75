"""Render every error as `{"error": {"code", "message"}}` with the right status."""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from proxy.responses import JSONBytesResponse
from shared.errors import BridgeError, ErrorCode, RateLimited
from shared.logging import get_logger

logger = get_logger(__name__)

_STATUS_CODES = {
    400: ErrorCode.INVALID_MESSAGE,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    429: ErrorCode.RATE_LIMITED,
}


# FastAPI's answer to a JSON body it cannot decode at all (invalid UTF-8): for the REST APIs that is
# a validation failure like any malformed JSON (FastAPI answers those 422 itself).
_UNPARSABLE_BODY_DETAIL = "There was an error parsing the body"


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The one error envelope of every route."""
    return {"error": {"code": code, "message": message, **extra}}


def _allowed_methods(request: Request) -> str:
    """Every method the OpenAPI document declares for this path ("" for an undocumented path).
    Starlette's own `Allow` names only the first matching route's, while GET and POST of one path
    are separate routes here."""
    patterns: list[tuple[re.Pattern[str], set[str]]] | None = getattr(request.app.state, "allow_patterns", None)
    if patterns is None:
        patterns = [
            (compile_path(path)[0], {method.upper() for method in operations})
            for path, operations in request.app.openapi().get("paths", {}).items()
        ]
        request.app.state.allow_patterns = patterns
    methods = set().union(*(methods for pattern, methods in patterns if pattern.match(request.url.path)))
    return ", ".join(sorted(methods))


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Echo where and why, never the rejected input (it may hold a secret).
    return [{"loc": list(err.get("loc", ())), "msg": err.get("msg", "")} for err in exc.errors()]


def install_exception_handlers(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(BridgeError)
    async def _bridge_error(_: Request, exc: BridgeError) -> JSONBytesResponse:
        response = JSONBytesResponse(error_body(exc.code, exc.message), status_code=exc.http_status)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_seconds)))
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONBytesResponse:
        return JSONBytesResponse(
            error_body(ErrorCode.VALIDATION_FAILED, "request validation failed", details=_validation_details(exc)),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONBytesResponse:
        if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY_DETAIL:
            body = error_body(ErrorCode.VALIDATION_FAILED, "the body is not valid JSON (UTF-8)")
            return JSONBytesResponse(body, status_code=422)
        code = _STATUS_CODES.get(exc.status_code, ErrorCode.INTERNAL_ERROR)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("allow", "")
        return JSONBytesResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONBytesResponse:
        logger.exception("unhandled_error", error=exc.__class__.__name__)
        return JSONBytesResponse(error_body(ErrorCode.INTERNAL_ERROR, "internal error"), status_code=500)
