"""Applying claimed Firehose requests: a batch in one transaction, with the same outcome as
applying them one by one in queue order, in a handful of statements:

1. claim every request id in processed_request at once (ids already there are skipped; a replay
   claims its own key, shared.inbound.processed_requests.replay_key); a request that fails the
   whole message's validation (the proxy checked an event request's envelope only) is logged
   INVALID_MESSAGE and not applied;
2. event requests, in runs (worker.inbound.events): one customer resolution, one ledger insert and
   one profile update per run;
3. any other request (audiences, DSR) is applied on its own, between the runs, in queue order;
4. the daily ECHO_DROPPED summaries and the outcome of every replay are written.

If anything unexpected fails, the transaction is rolled back and each request is applied by the
same code as a batch of one, in a transaction of its own, so one bad request is logged
(PROCESSING_FAILED) without holding the others back. A PostgreSQL outage surfaces as
DatabaseUnavailable: the caller retries the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.errorlog.writer import add_to_daily_summary, record_replay_outcome
from shared.errors import DatabaseUnavailable, ErrorCode, ErrorSource
from shared.inbound.processed_requests import ClaimKey, claim_requests, replay_key
from shared.inbound.schemas import (
    AudienceMembershipChangeRequest,
    AudienceSubscriptionRequest,
    DsrProcessingRequest,
    FirehoseRequest,
    MessageType,
    describe_validation_error,
    parse_request,
)
from shared.logging import get_logger
from shared.mapping.sanitize import scrub_nul
from shared.queues.firehose import QueuedRequest
from shared.tenants.config import TenantConfig, TenantConfigCache
from shared.transient import is_transient_database_error
from worker.inbound.audiences import apply_audience_subscription, apply_membership_change
from worker.inbound.context import RequestInApplication
from worker.inbound.data_subjects import apply_data_subject_request
from worker.inbound.events import EventRun
from worker.inbound.failure_log import record_processing_failure

logger = get_logger(__name__)

ECHO_SUMMARY = (
    "echoed event(s) dropped today: events the bridge itself sent to mParticle came back through the Firehose"
)
NUL_REPLACED_MESSAGE = "NUL characters in the request were replaced with U+FFFD before it was stored"
# The Firehose body escapes a NUL character this way (a raw one is not valid JSON).
_ESCAPED_NUL = "\\u0000"


@dataclass
class BatchOutcome:
    """What applying a batch did (logged by the consumer; counted by the metrics)."""

    requests: int
    applied: int = 0
    ledger_events_recorded: int = 0
    echo_events_dropped: int = 0
    failed: int = 0
    one_by_one: bool = False

    def __add__(self, other: BatchOutcome) -> BatchOutcome:
        return BatchOutcome(
            self.requests + other.requests,
            self.applied + other.applied,
            self.ledger_events_recorded + other.ledger_events_recorded,
            self.echo_events_dropped + other.echo_events_dropped,
            self.failed + other.failed,
            self.one_by_one or other.one_by_one,
        )

    def as_log_fields(self) -> dict[str, int | bool]:
        """The fields of the consumer's `firehose_batch_applied` log line."""
        return {
            "requests": self.requests,
            "applied": self.applied,
            "ledger_events": self.ledger_events_recorded,
            "echo_events_dropped": self.echo_events_dropped,
            "failed": self.failed,
            "one_by_one": self.one_by_one,
        }


async def apply_firehose_batch(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_configs: TenantConfigCache, claimed: Sequence[QueuedRequest]
) -> BatchOutcome:
    """Apply claimed requests in one transaction (or, after an unexpected failure, one by one)."""
    try:
        async with session_scope(sessionmaker) as session:
            return await _apply_together(session, tenant_configs, claimed)
    except Exception as exc:
        if is_transient_database_error(exc):
            raise DatabaseUnavailable(exc.__class__.__name__) from exc
        logger.warning("firehose_batch_failed_applying_one_by_one", requests=len(claimed), error=type(exc).__name__)
    outcome = BatchOutcome(0, one_by_one=True)
    for request in claimed:
        outcome += await _apply_alone(sessionmaker, tenant_configs, request)
    return outcome


async def _apply_alone(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_configs: TenantConfigCache, request: QueuedRequest
) -> BatchOutcome:
    """A batch of one; a failure is logged as PROCESSING_FAILED (or as the replay's outcome)."""
    try:
        async with session_scope(sessionmaker) as session:
            return await _apply_together(session, tenant_configs, [request])
    except Exception as exc:
        if is_transient_database_error(exc):
            raise DatabaseUnavailable(exc.__class__.__name__) from exc
        logger.exception("firehose_request_failed", tenant_id=request.tenant_id, request_id=request.request_id)
        await record_processing_failure(sessionmaker, request, exc)
        return BatchOutcome(1, failed=1)


def needs_refresh(tenant: TenantConfig | None) -> bool:
    """Whether this process's snapshot may be older than what the proxy accepted the request with.

    The proxy only accepts requests of connected tenants, so a snapshot that is missing (created
    after the last poll) or disconnected (connected after it) is refreshed before being trusted.
    """
    return tenant is None or not tenant.connected


async def _tenants(tenant_configs: TenantConfigCache, claimed: Sequence[QueuedRequest]) -> dict[str, TenantConfig]:
    if any(needs_refresh(tenant_configs.get(request.tenant_id)) for request in claimed):
        await tenant_configs.refresh()
    found = {request.tenant_id: tenant_configs.get(request.tenant_id) for request in claimed}
    return {tenant_id: config for tenant_id, config in found.items() if config is not None}


@dataclass
class _Parsed:
    context: RequestInApplication
    claim_key: ClaimKey
    nul_replaced: bool
    # Why the message is invalid (it is then logged INVALID_MESSAGE and not applied), else None.
    invalid: str | None


def _validated(message_type: MessageType, payload: dict[str, Any]) -> tuple[FirehoseRequest | None, str | None]:
    """(the request's model, None), or (None, what is wrong). The proxy validated only what it reads
    of an event request (shared.inbound.schemas.ENVELOPE_MODELS); the whole message is checked here."""
    try:
        return parse_request(message_type, payload), None
    except ValidationError as exc:
        return None, f"invalid message: {describe_validation_error(exc)}"


def _parse(session: AsyncSession, tenant: TenantConfig, queued: QueuedRequest) -> _Parsed:
    """The request (NUL characters replaced), ready to be applied."""
    payload = orjson.loads(queued.body)
    nul_replaced = False
    if _ESCAPED_NUL in queued.body:
        payload, nul_replaced = scrub_nul(payload)
    message_type = MessageType(payload["type"])
    request, invalid = _validated(message_type, payload)
    context = RequestInApplication(
        session=session,
        tenant=tenant,
        inbound=tenant.inbound_or_default,
        message_type=message_type,
        request_id=str(payload["id"]),
        request=request,
        payload=payload,
        received_at=datetime.fromtimestamp(queued.received_at_ms / 1000, tz=UTC),
        replay_of=queued.replay_of,
    )
    replay = queued.replay_of
    key = replay_key(replay.entry_id, replay.requested_at_ms) if replay else context.request_id
    return _Parsed(context, (tenant.id, key), nul_replaced, invalid)


async def _apply_together(
    session: AsyncSession, tenant_configs: TenantConfigCache, claimed: Sequence[QueuedRequest]
) -> BatchOutcome:
    tenants = await _tenants(tenant_configs, claimed)
    parsed = [
        _parse(session, tenants[request.tenant_id], request) for request in claimed if request.tenant_id in tenants
    ]
    fresh = await claim_requests(session, [item.claim_key for item in parsed])
    contexts = [item.context for item in parsed if item.claim_key in fresh]
    events = EventRun(session)
    for item in parsed:
        if item.claim_key not in fresh:
            continue
        context = item.context
        if item.nul_replaced and context.replay_of is None:
            await context.log_error(ErrorSource.ENGINE_REQUEST, ErrorCode.NUL_REPLACED, NUL_REPLACED_MESSAGE)
        if item.invalid is not None:
            await context.log_error(ErrorSource.ENGINE_REQUEST, ErrorCode.INVALID_MESSAGE, item.invalid)
            continue
        if context.tenant.connected and context.message_type is MessageType.EVENT_PROCESSING:
            events.add(context)
            continue
        await events.apply()  # keep queue order: earlier event requests first
        await _apply_other(context)
    await events.apply()
    for tenant_id, count in sorted(events.echoes_by_tenant.items()):
        await add_to_daily_summary(
            session,
            tenant_id=tenant_id,
            source=ErrorSource.ENGINE_REQUEST,
            error_code=ErrorCode.ECHO_DROPPED,
            count=count,
            what=ECHO_SUMMARY,
        )
    for context in contexts:
        if context.replay_of is not None:
            outcome = context.replay_outcome()
            await record_replay_outcome(
                session, tenant_id=context.tenant.id, entry_id=context.replay_of.entry_id, outcome=outcome
            )
    return BatchOutcome(
        len(claimed),
        applied=len(contexts),
        ledger_events_recorded=events.recorded,
        echo_events_dropped=events.echo_events_dropped,
    )


async def _apply_other(context: RequestInApplication) -> str:
    """Apply a claimed request that is not part of an event run; returns a one-line summary."""
    request = context.request
    if not context.tenant.connected:
        await context.log_error(
            ErrorSource.ENGINE_REQUEST,
            ErrorCode.TENANT_DISCONNECTED,
            "the loyalty environment was disconnected before the request was processed",
        )
        return "tenant disconnected"
    if isinstance(request, AudienceSubscriptionRequest):
        return await apply_audience_subscription(context, request)
    if isinstance(request, AudienceMembershipChangeRequest):
        return await apply_membership_change(context, request)
    if isinstance(request, DsrProcessingRequest):
        return await apply_data_subject_request(context, request)
    return f"{context.message_type} needs no processing"
