"""Domain errors with stable codes. Routes render them; nothing below the routes knows HTTP."""

from __future__ import annotations

from enum import StrEnum


class ErrorSource(StrEnum):
    """Where an incoming request failed (CONTRACT §4)."""

    PROXY_REQUEST = "proxy_request"
    PROXY_FORWARDING = "proxy_forwarding"
    ENGINE_REQUEST = "engine_request"
    ENGINE_PROCESSING = "engine_processing"


class ErrorCode(StrEnum):
    """Stable, upper-case error codes. The README's catalogue lists each one."""

    # request shape and authentication
    MALFORMED_JSON = "MALFORMED_JSON"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    UNKNOWN_MESSAGE_TYPE = "UNKNOWN_MESSAGE_TYPE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNAUTHORIZED = "UNAUTHORIZED"
    INVALID_TOKEN = "INVALID_TOKEN"
    INVALID_CALLER_TOKEN = "INVALID_CALLER_TOKEN"
    UNKNOWN_TENANT = "UNKNOWN_TENANT"
    TENANT_DISCONNECTED = "TENANT_DISCONNECTED"
    FORBIDDEN = "FORBIDDEN"
    # hand-off to the worker
    QUEUE_UNAVAILABLE = "QUEUE_UNAVAILABLE"
    # worker side
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
    MISSING_IDENTIFIER = "MISSING_IDENTIFIER"
    LIST_INACTIVE = "LIST_INACTIVE"
    PROCESSING_FAILED = "PROCESSING_FAILED"
    # admin and outbound API
    VALIDATION_FAILED = "VALIDATION_FAILED"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    NOT_CONNECTED = "NOT_CONNECTED"
    NO_IDENTITY = "NO_IDENTITY"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class BridgeError(Exception):
    """Base error: a stable code, a human message and the HTTP status a route should answer."""

    http_status = 500
    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!s}, message={self.message!r})"


class BadRequest(BridgeError):
    http_status = 400
    code = ErrorCode.INVALID_MESSAGE


class Unauthorized(BridgeError):
    http_status = 401
    code = ErrorCode.UNAUTHORIZED


class Forbidden(BridgeError):
    http_status = 403
    code = ErrorCode.FORBIDDEN


class NotFound(BridgeError):
    http_status = 404
    code = ErrorCode.NOT_FOUND


class Conflict(BridgeError):
    http_status = 409
    code = ErrorCode.CONFLICT


class PayloadTooLarge(BridgeError):
    http_status = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE


class Unprocessable(BridgeError):
    http_status = 422
    code = ErrorCode.VALIDATION_FAILED


class ServiceUnavailable(BridgeError):
    http_status = 503
    code = ErrorCode.QUEUE_UNAVAILABLE
