"""Domain errors with stable codes. Routes render them; nothing below the routes knows HTTP."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


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
    EVENT_TOO_OLD = "EVENT_TOO_OLD"
    ECHO_DROPPED = "ECHO_DROPPED"
    NUL_REPLACED = "NUL_REPLACED"
    # replay of the incoming error log
    NO_PAYLOAD = "NO_PAYLOAD"
    NOT_REPLAYABLE = "NOT_REPLAYABLE"
    # admin and outbound API
    VALIDATION_FAILED = "VALIDATION_FAILED"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    NOT_CONNECTED = "NOT_CONNECTED"
    NO_IDENTITY = "NO_IDENTITY"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # security: method routing, rate limits, secrets at rest
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    RATE_LIMITED = "RATE_LIMITED"
    SECRET_UNREADABLE = "SECRET_UNREADABLE"


class BridgeError(Exception):
    """Base error: a stable code, a human message and the HTTP status a route should answer.

    A subclass declares its defaults in its class line: `class Gone(BridgeError, http_status=410,
    code=ErrorCode.NOT_FOUND)`."""

    http_status: ClassVar[int] = 500
    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init_subclass__(cls, *, http_status: int | None = None, code: ErrorCode | None = None) -> None:
        super().__init_subclass__()
        if http_status is not None:
            cls.http_status = http_status
        if code is not None:
            cls.code = code

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!s}, message={self.message!r})"


class BadRequest(BridgeError, http_status=400, code=ErrorCode.INVALID_MESSAGE):
    """The request cannot be read or is not a valid message."""


class Unauthorized(BridgeError, http_status=401, code=ErrorCode.UNAUTHORIZED):
    """Missing or wrong credentials."""


class Forbidden(BridgeError, http_status=403, code=ErrorCode.FORBIDDEN):
    """Valid credentials, but not for this resource."""


class NotFound(BridgeError, http_status=404, code=ErrorCode.NOT_FOUND):
    """No such resource (or not the caller's)."""


class Conflict(BridgeError, http_status=409, code=ErrorCode.CONFLICT):
    """The resource is not in a state for that."""


class PayloadTooLarge(BridgeError, http_status=413, code=ErrorCode.PAYLOAD_TOO_LARGE):
    """The body is over the size limit."""


class Unprocessable(BridgeError, http_status=422, code=ErrorCode.VALIDATION_FAILED):
    """Well-formed, but invalid."""


class RateLimited(BridgeError, http_status=429, code=ErrorCode.RATE_LIMITED):
    """Too many calls: answered 429 with `Retry-After: retry_after_seconds` (rounded up)."""

    def __init__(self, message: str, *, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class ServiceUnavailable(BridgeError, http_status=503, code=ErrorCode.QUEUE_UNAVAILABLE):
    """A dependency cannot take the work right now: retry later."""


class DatabaseUnavailable(ServiceUnavailable, code=ErrorCode.DATABASE_UNAVAILABLE):
    """PostgreSQL cannot be reached (or is shutting down, or overloaded) right now: retry later."""


class QueueUnavailable(ServiceUnavailable, code=ErrorCode.QUEUE_UNAVAILABLE):
    """Redis (the work queue) cannot be reached right now: retry later."""
