"""The Firehose endpoint's logic: decode, authenticate, prioritise, enqueue, answer.

The success path reads only the in-process tenant config cache and makes exactly one Redis round
trip (a Lua script, shared by the requests of one event-loop iteration: GroupedEnqueuer); it never
touches PostgreSQL. PostgreSQL is written on failure paths only,
to log a rejected request of a known tenant.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from redis.exceptions import RedisError

from proxy.state import ProxyState
from shared.credentials import secrets_equal
from shared.errorlog.deferred import ErrorLogEntry, write_entry
from shared.errors import BadRequest, BridgeError, ErrorCode, ErrorSource, QueueUnavailable, Unauthorized
from shared.inbound.responses import (
    TENANT_SETTING_ID,
    TOKEN_SETTING_ID,
    encode_acknowledgement,
    encode_response,
    registration_response,
)
from shared.inbound.schemas import (
    MAX_ID_LENGTH,
    AuthenticatedRequest,
    EventProcessingEnvelope,
    FirehoseRequest,
    MessageType,
    describe_validation_error,
    is_verification,
    parse_envelope,
)
from shared.logging import get_logger
from shared.mapping.inbound import request_priority
from shared.observability.metrics import record_firehose_accepted, record_firehose_rejected, record_firehose_spooled
from shared.observability.tracing import current_traceparent, firehose_receive_span, tracing_enabled
from shared.queues.firehose import GroupedEnqueuer, QueuedRequest
from shared.queues.jobs import UNMAPPED_PRIORITY
from shared.queues.spool import FirehoseSpool
from shared.redaction import REDACTED
from shared.tenants.config import TenantConfig
from shared.transient import is_transient_database_error, is_transient_queue_error

logger = get_logger(__name__)
_MESSAGE_TYPES = frozenset(MessageType)
# A dict look-up: MessageType(value) (the Enum call) cost ~10 µs a request in the profile.
_MESSAGE_TYPE_BY_VALUE = {message_type.value: message_type for message_type in MessageType}

CALLER_TOKEN_SCHEME = "token"
# Upper bound on one enqueue round trip (the client's own socket timeouts are 2 s); applied per
# batch by the GroupedEnqueuer rather than per request (a timer per request showed in the profile).
ENQUEUE_TIMEOUT_SECONDS = 5.0
# Upper bound on spooling one request to PostgreSQL when Redis refused it.
SPOOL_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class FirehoseCall:
    """One POST as received: the raw body, the Authorization header and when it arrived."""

    body: bytes
    authorization: str | None
    received_at_ms: int


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def handle_firehose_call(state: ProxyState, enqueuer: GroupedEnqueuer, call: FirehoseCall) -> bytes:
    """The encoded answer to one Firehose message; raises BridgeError (400/401/503) when it is
    not accepted."""
    if not tracing_enabled():
        return await _handle_firehose_call(state, enqueuer, call)
    with firehose_receive_span(None):
        return await _handle_firehose_call(state, enqueuer, call)


async def _handle_firehose_call(state: ProxyState, enqueuer: GroupedEnqueuer, call: FirehoseCall) -> bytes:
    payload = _decode(call.body)
    tenant = _claimed_tenant(state, payload)
    try:
        message_type, request = _parse(payload)
    except BridgeError as rejected:
        raise await _logged(state, tenant, call, payload, rejected) from None
    if not isinstance(request, AuthenticatedRequest):  # module registration: open to anyone
        record_firehose_accepted(message_type)
        return encode_response(registration_response(request.id, now_ms()))
    try:
        tenant = _authenticate(state, tenant, request, call.authorization)
    except BridgeError as rejected:
        raise await _logged(state, tenant, call, payload, rejected) from None
    spooled = not is_verification(request) and await _enqueue(state, enqueuer, tenant, request, call, payload)
    (record_firehose_spooled if spooled else record_firehose_accepted)(message_type)
    return encode_acknowledgement(message_type, request.id, now_ms())


async def _enqueue(
    state: ProxyState,
    enqueuer: GroupedEnqueuer,
    tenant: TenantConfig,
    request: AuthenticatedRequest,
    call: FirehoseCall,
    payload: dict[str, Any],
) -> bool:
    """Queue the request; True when Redis refused it and it was spooled to PostgreSQL instead."""
    queued = QueuedRequest(
        tenant_id=tenant.id,
        request_id=request.id,
        body=_job_body(call.body, request),
        received_at_ms=call.received_at_ms,
        priority=_priority(tenant, request, payload),
        traceparent=current_traceparent(),
    )
    try:
        # False when already queued under this id (mParticle retried): answered 200 all the same.
        await enqueuer.enqueue(queued)
        return False
    except (RedisError, OSError, TimeoutError) as exc:
        logger.warning(
            "firehose_enqueue_failed", tenant_id=tenant.id, request_id=request.id, error=exc.__class__.__name__
        )
        if not is_transient_queue_error(exc):
            unavailable = QueueUnavailable("the processing queue refused the request; retry later")
            raise await _logged(
                state, tenant, call, payload, unavailable, source=ErrorSource.PROXY_FORWARDING
            ) from None
    # Redis is out: keep the request in PostgreSQL (off the success path, which never gets here).
    try:
        async with asyncio.timeout(SPOOL_TIMEOUT_SECONDS), state.sessionmaker() as session:
            await FirehoseSpool(session).add(queued)
            await session.commit()
    except Exception as exc:
        logger.warning(
            "firehose_spool_failed", tenant_id=tenant.id, request_id=request.id, error=exc.__class__.__name__
        )
        unavailable = QueueUnavailable(
            "neither the processing queue nor the database can take the request; retry later"
        )
        raise await _logged(state, tenant, call, payload, unavailable, source=ErrorSource.PROXY_FORWARDING) from None
    return True


def _decode(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        record_firehose_rejected(None, ErrorCode.MALFORMED_JSON)
        raise BadRequest("the body is not valid JSON", code=ErrorCode.MALFORMED_JSON) from None
    if not isinstance(payload, dict):
        record_firehose_rejected(None, ErrorCode.INVALID_MESSAGE)
        raise BadRequest("a Firehose message is a JSON object", code=ErrorCode.INVALID_MESSAGE)
    return payload


def _parse(payload: dict[str, Any]) -> tuple[MessageType, FirehoseRequest]:
    """The message as far as the proxy reads it (shared.inbound.schemas.ENVELOPE_MODELS): an event
    request's envelope and event heads here, the rest in the worker, off the hot path."""
    message_type = _message_type(payload)
    try:
        return message_type, parse_envelope(message_type, payload)
    except ValidationError as exc:
        raise BadRequest(f"invalid message: {describe_validation_error(exc)}", code=ErrorCode.INVALID_MESSAGE) from None


def _message_type(payload: dict[str, Any]) -> MessageType:
    value = payload.get("type")
    if not isinstance(value, str):
        raise BadRequest("the message has no `type`", code=ErrorCode.INVALID_MESSAGE)
    message_type = _MESSAGE_TYPE_BY_VALUE.get(value)
    if message_type is None:
        raise BadRequest("unsupported message type", code=ErrorCode.UNKNOWN_MESSAGE_TYPE)
    return message_type


def _account_setting(payload: dict[str, Any], setting_id: str) -> str | None:
    account = payload.get("account")
    settings = account.get("account_settings") if isinstance(account, dict) else None
    value = settings.get(setting_id) if isinstance(settings, dict) else None
    return value if isinstance(value, str) else None


def _claimed_tenant(state: ProxyState, payload: dict[str, Any]) -> TenantConfig | None:
    """The tenant the message names, if it exists (before anything is authenticated)."""
    tenant_id = _account_setting(payload, TENANT_SETTING_ID)
    return state.tenant_configs.get(tenant_id) if tenant_id else None


def _authenticate(
    state: ProxyState, tenant: TenantConfig | None, request: AuthenticatedRequest, authorization: str | None
) -> TenantConfig:
    caller_token = state.settings.mparticle_caller_token
    if caller_token is not None and caller_token.get_secret_value():
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != CALLER_TOKEN_SCHEME or not secrets_equal(presented, caller_token.get_secret_value()):
            raise Unauthorized("missing or invalid `Authorization: Token` header", code=ErrorCode.INVALID_CALLER_TOKEN)
    account_settings = request.account.account_settings if request.account else {}
    if not account_settings.get(TENANT_SETTING_ID):
        raise Unauthorized(f"the message carries no `{TENANT_SETTING_ID}` account setting")
    if tenant is None:
        raise Unauthorized("unknown loyalty environment", code=ErrorCode.UNKNOWN_TENANT)
    if not tenant.connected or not tenant.inbound_token_hash:
        raise Unauthorized("the loyalty environment is not connected", code=ErrorCode.TENANT_DISCONNECTED)
    # Keyed hash of the presented token against the stored one, in constant time (proxy/firehose/tokens.py).
    if not state.inbound_tokens.matches(tenant.id, account_settings.get(TOKEN_SETTING_ID), tenant.inbound_token_hash):
        raise Unauthorized(f"missing or invalid `{TOKEN_SETTING_ID}`", code=ErrorCode.INVALID_TOKEN)
    return tenant


def _priority(tenant: TenantConfig, request: AuthenticatedRequest, payload: dict[str, Any]) -> int:
    if not isinstance(request, EventProcessingEnvelope):
        return UNMAPPED_PRIORITY
    priority = request_priority(tenant.inbound_mappings, payload.get("events") or [])
    return UNMAPPED_PRIORITY if priority is None else priority


def _job_body(body: bytes, request: AuthenticatedRequest) -> str:
    """The body as text with the tenant's token blanked out: nothing downstream needs it, and the
    job sits in Redis and shows up (truncated) in the worker's job log lines."""
    text = body.decode()
    # Authenticated: the presented token is the tenant's (only its hash is kept in memory).
    token = request.account.account_settings.get(TOKEN_SETTING_ID) if request.account else None
    return text.replace(token, REDACTED) if isinstance(token, str) and token else text


async def _logged(
    state: ProxyState,
    tenant: TenantConfig | None,
    call: FirehoseCall,
    payload: dict[str, Any],
    error: BridgeError,
    *,
    source: ErrorSource = ErrorSource.PROXY_REQUEST,
) -> BridgeError:
    """Log a rejection of a known tenant's request (requests naming no tenant are not logged) and
    hand the error back to be raised. A logging failure never changes the answer."""
    message_type = payload.get("type")
    known_type = isinstance(message_type, str) and message_type in _MESSAGE_TYPES
    record_firehose_rejected(message_type if known_type else None, error.code)
    if tenant is None:
        return error
    request_id = payload.get("id")
    entry = ErrorLogEntry(
        tenant_id=tenant.id,
        source=source,
        error_code=error.code,
        message=error.message,
        created_at=datetime.fromtimestamp(call.received_at_ms / 1000, tz=UTC),
        request_id=request_id[:MAX_ID_LENGTH] if isinstance(request_id, str) else None,
        payload=payload,
    )
    try:
        await write_entry(state.sessionmaker, entry)
    except Exception as exc:  # the caller still gets its answer; an outage only delays the entry
        logger.warning("firehose_rejection_not_logged", tenant_id=tenant.id, error=exc.__class__.__name__)
        if is_transient_database_error(exc):
            state.deferred_error_log.defer(entry)
    return error
