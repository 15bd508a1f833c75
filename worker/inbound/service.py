"""Applying one Firehose request: a single transaction that first claims the request id in
processed_request (a request already applied is skipped), then records everything it yields.
A worker killed mid-way leaves nothing half-done; the re-run applies the request once.

Batches (worker.inbound.batch) apply many requests in one transaction with the same rules; this
module is also their fallback, one transaction per request, when a batch fails unexpectedly.

Event requests: mapped events become ledger entries of the sender (resolved or created per
CONTRACT §3); events of types no mapping names (session_start, user_attribute_change, ... when
unmapped) are ignored. Audience requests: see worker.inbound.audiences. DSR erasure clears the
resolved customer's attributes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import orjson
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.errorlog.writer import record_incoming_error
from shared.errors import ErrorCode, ErrorSource
from shared.inbound.customers import NewLedgerEntry
from shared.inbound.schemas import (
    AudienceMembershipChangeRequest,
    AudienceSubscriptionRequest,
    DsrProcessingRequest,
    EventProcessingRequest,
    MessageType,
    parse_request,
)
from shared.mapping.inbound import (
    OPT_IN_ACTION,
    RAW_ENCODING,
    merged_profile_attributes,
    plan_ledger_entries,
    records_opt_in,
    resolve_identifier,
)
from shared.models import ProcessedRequest
from shared.tenants.config import TenantConfig, TenantConfigCache
from worker.inbound.audiences import apply_audience_subscription, apply_membership_change
from worker.inbound.context import DEFAULT_INBOUND, InboundRequest
from worker.inbound.failures import DatabaseUnavailable, is_transient_error

logger = logging.getLogger(__name__)

LEDGER_SOURCE = "mparticle"
ERASURE = "erasure"
# Which DSR subject identity carries each Firehose identity type a tenant may resolve by.
DSR_IDENTITY_KEYS = {"customer": "controller_customer_id", "email": "email"}
FAILURE_MESSAGE_LENGTH = 300


@dataclass(frozen=True)
class InboundJob:
    """The job's arguments: the tenant, the request body (token blanked) and when it arrived."""

    tenant_id: str
    body: str
    received_at_ms: int

    @property
    def received_at(self) -> datetime:
        return datetime.fromtimestamp(self.received_at_ms / 1000, tz=UTC)


def needs_refresh(tenant: TenantConfig | None) -> bool:
    """Whether this process's snapshot may be older than what the proxy accepted the request with.

    The proxy only accepts requests of connected tenants, so a snapshot that is missing (created
    after the last poll) or disconnected (connected after it) is refreshed before being trusted.
    """
    return tenant is None or not tenant.connected


async def process_inbound_job(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_configs: TenantConfigCache, job: InboundJob
) -> str:
    """Apply the job in one transaction and return a one-line summary. Raises DatabaseUnavailable
    when PostgreSQL cannot be reached (the caller retries later); any other failure rolls the
    transaction back and is logged as PROCESSING_FAILED in a fresh one."""
    try:
        tenant = tenant_configs.get(job.tenant_id)
        if needs_refresh(tenant):
            await tenant_configs.refresh()
            tenant = tenant_configs.get(job.tenant_id)
        if tenant is None:
            return "tenant no longer exists; request dropped"
        async with session_scope(sessionmaker) as session:
            return await apply_firehose_request(session, tenant, job)
    except Exception as exc:
        if is_transient_error(exc):
            raise DatabaseUnavailable(exc.__class__.__name__) from exc
        logger.exception("firehose request of tenant %s failed", job.tenant_id)
        await record_processing_failure(sessionmaker, job, exc)
        return f"failed ({exc.__class__.__name__}); logged as PROCESSING_FAILED"


async def record_processing_failure(
    sessionmaker: async_sessionmaker[AsyncSession], job: InboundJob, error: BaseException
) -> None:
    """Log an engine_processing PROCESSING_FAILED entry with the payload, in its own transaction."""
    try:
        payload = orjson.loads(job.body)
    except orjson.JSONDecodeError:
        payload = None
    request_id = payload.get("id") if isinstance(payload, dict) else None
    first_line = (str(error).splitlines() or [""])[0]
    try:
        async with session_scope(sessionmaker) as session:
            await record_incoming_error(
                session,
                tenant_id=job.tenant_id,
                source=ErrorSource.ENGINE_PROCESSING,
                error_code=ErrorCode.PROCESSING_FAILED,
                message=f"{error.__class__.__name__}: {first_line}"[:FAILURE_MESSAGE_LENGTH],
                created_at=job.received_at,
                request_id=request_id[:128] if isinstance(request_id, str) else None,
                payload=payload,
            )
    except Exception as exc:
        if is_transient_error(exc):
            raise DatabaseUnavailable(exc.__class__.__name__) from exc
        raise


async def claim_request(session: AsyncSession, tenant_id: str, request_id: str) -> bool:
    """Mark the request as applied (in the job's transaction); False when it already was."""
    table = cast(Table, ProcessedRequest.__table__)  # a Core statement: this runs once per request
    claimed = await session.scalar(
        insert(table)
        .values(tenant_id=tenant_id, request_id=request_id)
        .on_conflict_do_nothing(index_elements=[table.c.tenant_id, table.c.request_id])
        .returning(table.c.request_id)
    )
    return claimed is not None


async def apply_firehose_request(session: AsyncSession, tenant: TenantConfig, job: InboundJob) -> str:
    """Apply one request in the caller's transaction; returns a one-line summary."""
    context = parse_job(session, tenant, job)
    if not await claim_request(session, tenant.id, context.request.id):
        return f"request {context.request.id} already applied"
    return await apply_claimed_request(context)


def parse_job(session: AsyncSession, tenant: TenantConfig, job: InboundJob) -> InboundRequest:
    """The job's request, validated again (the proxy already did), ready to be applied."""
    payload = orjson.loads(job.body)
    return InboundRequest(
        session=session,
        tenant=tenant,
        inbound=tenant.inbound or DEFAULT_INBOUND,
        request=parse_request(MessageType(payload["type"]), payload),
        payload=payload,
        received_at=job.received_at,
    )


async def apply_claimed_request(context: InboundRequest) -> str:
    """Apply a request whose id this transaction has claimed; returns a one-line summary."""
    request = context.request
    if not context.tenant.connected:
        await context.log_error(
            ErrorSource.ENGINE_REQUEST,
            ErrorCode.TENANT_DISCONNECTED,
            "the loyalty environment was disconnected before the request was processed",
        )
        return "tenant disconnected"
    if isinstance(request, EventProcessingRequest):
        return await apply_events(context)
    if isinstance(request, AudienceSubscriptionRequest):
        return await apply_audience_subscription(context, request)
    if isinstance(request, AudienceMembershipChangeRequest):
        return await apply_membership_change(context, request)
    if isinstance(request, DsrProcessingRequest):
        return await apply_data_subject_request(context, request)
    return f"{request.type} needs no processing"


async def apply_events(context: InboundRequest) -> str:
    """Record the ledger entries the mapped events yield, for the resolved (or created) sender."""
    drafts = plan_ledger_entries(
        context.payload,
        context.tenant.inbound_mappings,
        request_id=context.request.id,
        received_at=context.received_at,
    )
    if not drafts:
        return "no mapped events"
    inbound = context.inbound
    lookup = resolve_identifier(context.payload, inbound.customer_identifier_field, inbound.loyalty_identifier_field)
    if lookup.value is None:
        await context.log_error(
            ErrorSource.ENGINE_REQUEST, ErrorCode.MISSING_IDENTIFIER, lookup.problem or "no identifier"
        )
        return "missing identifier"
    customer = await context.resolve_customer(
        lookup.value, yields_opt_in=any(draft.action == OPT_IN_ACTION for draft in drafts)
    )
    if customer is None:
        await context.log_error(
            ErrorSource.ENGINE_REQUEST,
            ErrorCode.CUSTOMER_NOT_FOUND,
            f"no customer with {context.describe_identifier(lookup.value)}; {len(drafts)} loyalty event(s) skipped",
        )
        return "customer not found"
    recorded = await context.customers.append_ledger_entries(
        customer.id,
        [
            NewLedgerEntry(draft.action, draft.data, draft.source_event_id, draft.dedupe_key, draft.occurred_at)
            for draft in drafts
        ],
        request_id=context.request.id,
        source=LEDGER_SOURCE,
    )
    await context.customers.apply_profile_changes(
        customer.id,
        merged_profile_attributes(drafts, recorded),
        activate=customer.status != "active" and records_opt_in(drafts, recorded),
    )
    return f"{len(recorded)} ledger event(s) recorded for customer {customer.id}"


async def apply_data_subject_request(context: InboundRequest, request: DsrProcessingRequest) -> str:
    """Erasure clears the attributes of the customer the subject identities resolve to (by the
    tenant's identifier type: `customer` <- controller_customer_id, `email` <- email). Other
    request types, and subjects that resolve to no customer, are acknowledged and left alone."""
    if request.subject_request_type != ERASURE:
        return f"DSR {request.subject_request_type!r} acknowledged; nothing to do"
    key = DSR_IDENTITY_KEYS.get(context.inbound.customer_identifier_field)
    identity = request.subject_identities.get(key) if key else None
    if identity is None or not identity.value or (identity.encoding or RAW_ENCODING) != RAW_ENCODING:
        return "DSR subject has no usable identity for this tenant"
    customers = context.customers
    customer = await customers.find_by_identifier(context.inbound.loyalty_identifier_field, identity.value)
    if customer is None:
        return "DSR subject is not a customer"
    await customers.erase_attributes(customer.id)
    return f"attributes of customer {customer.id} erased"
