"""Render every error as `{"error": {"code", "message"}}` with the right status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from proxy.responses import JSONBytesResponse
from shared.errors import BridgeError, ErrorCode

logger = logging.getLogger(__name__)

_STATUS_CODES = {
    400: ErrorCode.INVALID_MESSAGE,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.VALIDATION_FAILED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The one error envelope of every route."""
    return {"error": {"code": code, "message": message, **extra}}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Echo where and why, never the rejected input (it may hold a secret).
    return [{"loc": list(err.get("loc", ())), "msg": err.get("msg", "")} for err in exc.errors()]


def install_exception_handlers(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(BridgeError)
    async def _bridge_error(_: Request, exc: BridgeError) -> JSONBytesResponse:
        return JSONBytesResponse(error_body(exc.code, exc.message), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONBytesResponse:
        return JSONBytesResponse(
            error_body(ErrorCode.VALIDATION_FAILED, "request validation failed", details=_validation_details(exc)),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONBytesResponse:
        code = _STATUS_CODES.get(exc.status_code, ErrorCode.INTERNAL_ERROR)
        return JSONBytesResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONBytesResponse:
        logger.exception("unhandled error: %s", exc.__class__.__name__)
        return JSONBytesResponse(error_body(ErrorCode.INTERNAL_ERROR, "internal error"), status_code=500)
