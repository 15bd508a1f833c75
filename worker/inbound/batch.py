"""Applying a batch of Firehose requests in one transaction, with the same outcome as applying them
one by one in queue order (worker.inbound.service), in a handful of statements:

1. claim every request id in processed_request (ids already there are skipped);
2. event requests, in runs: plan their ledger entries (pure core), look every sender up at once,
   decide in queue order who is used, created (active with an opt_in, inactive with
   auto-subscribe) or rejected, create the new customers at once, insert every ledger row at
   once, then merge opt_in/profile attributes and activate, for the rows actually inserted;
3. any other request (audiences, DSR) is applied on its own, between the runs, in queue order.

If anything unexpected fails, the transaction is rolled back and each request is applied in a
transaction of its own, so one bad request is logged (PROCESSING_FAILED) without holding the
others back. A PostgreSQL outage surfaces as DatabaseUnavailable: the caller retries the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ARRAY, Text, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.errors import ErrorCode, ErrorSource
from shared.inbound.customers import (
    CustomerBatchRepository,
    NewCustomer,
    NewLedgerEntry,
    NewLedgerRow,
    ProfileChange,
    append_ledger_rows,
)
from shared.inbound.schemas import EventProcessingRequest
from shared.mapping.inbound import (
    CUSTOMER_ID_FIELD,
    OPT_IN_ACTION,
    PROFILE_MERGING_ACTIONS,
    CustomerAction,
    LedgerDraft,
    decide_customer,
    identifier_attributes,
    new_customer_id,
    plan_ledger_entries,
    resolve_identifier,
)
from shared.queues.firehose import FirehoseWork
from shared.tenants.config import TenantConfig, TenantConfigCache
from worker.inbound.context import InboundRequest
from worker.inbound.failures import DatabaseUnavailable, is_transient_error
from worker.inbound.service import (
    LEDGER_SOURCE,
    InboundJob,
    apply_claimed_request,
    needs_refresh,
    parse_job,
    process_inbound_job,
)

logger = logging.getLogger(__name__)

_CLAIM_SQL = text(
    """
    INSERT INTO processed_request (tenant_id, request_id)
    SELECT * FROM unnest(:tenant_ids, :request_ids)
    ON CONFLICT DO NOTHING
    RETURNING tenant_id, request_id
    """
).bindparams(bindparam("tenant_ids", type_=ARRAY(Text)), bindparam("request_ids", type_=ARRAY(Text)))


async def apply_firehose_batch(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_configs: TenantConfigCache, works: Sequence[FirehoseWork]
) -> str:
    """Apply claimed work in one transaction (or, after an unexpected failure, one by one)."""
    jobs = [InboundJob(work.tenant_id, work.body, work.received_at_ms) for work in works]
    try:
        async with session_scope(sessionmaker) as session:
            return await _apply_together(session, tenant_configs, jobs)
    except Exception as exc:
        if is_transient_error(exc):
            raise DatabaseUnavailable(exc.__class__.__name__) from exc
        logger.warning("a batch of %d failed (%s); applying its requests one by one", len(jobs), exc.__class__.__name__)
    outcomes = [await process_inbound_job(sessionmaker, tenant_configs, job) for job in jobs]
    failed = sum(outcome.startswith("failed") for outcome in outcomes)
    return f"{len(jobs)} request(s) applied one by one, {failed} failed"


async def _tenants(tenant_configs: TenantConfigCache, jobs: Sequence[InboundJob]) -> dict[str, TenantConfig]:
    if any(needs_refresh(tenant_configs.get(job.tenant_id)) for job in jobs):
        await tenant_configs.refresh()
    found = {job.tenant_id: tenant_configs.get(job.tenant_id) for job in jobs}
    return {tenant_id: config for tenant_id, config in found.items() if config is not None}


async def _apply_together(session: AsyncSession, tenant_configs: TenantConfigCache, jobs: Sequence[InboundJob]) -> str:
    tenants = await _tenants(tenant_configs, jobs)
    contexts = [parse_job(session, tenants[job.tenant_id], job) for job in jobs if job.tenant_id in tenants]
    claimed = await _claim(session, [(context.tenant.id, context.request.id) for context in contexts])
    events = _EventRun(session)
    applied = 0
    for context in contexts:
        if (context.tenant.id, context.request.id) not in claimed:
            continue
        applied += 1
        if context.tenant.connected and isinstance(context.request, EventProcessingRequest):
            events.add(context)
            continue
        await events.apply()  # keep queue order: earlier event requests first
        await apply_claimed_request(context)
    await events.apply()
    return f"{applied} of {len(jobs)} request(s) applied, {events.recorded} ledger event(s) recorded"


async def _claim(session: AsyncSession, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Claim request ids in processed_request; returns those not applied before."""
    if not keys:
        return set()
    rows = await session.execute(
        _CLAIM_SQL, {"tenant_ids": [key[0] for key in keys], "request_ids": [key[1] for key in keys]}
    )
    return {(row[0], row[1]) for row in rows}


# (tenant_id, loyalty identifier field, identifier value): how a sender is looked up.
SenderKey = tuple[str, str, str]


@dataclass
class _Planned:
    context: InboundRequest
    drafts: list[LedgerDraft]
    sender: SenderKey
    customer_id: str | None = None


@dataclass
class _EventRun:
    """Consecutive event requests, applied together."""

    session: AsyncSession
    pending: list[InboundRequest] = field(default_factory=list)
    recorded: int = 0

    def add(self, context: InboundRequest) -> None:
        self.pending.append(context)

    async def apply(self) -> None:
        contexts, self.pending = self.pending, []
        planned = [plan for context in contexts if (plan := await _plan(context)) is not None]
        if not planned:
            return
        customers = CustomerBatchRepository(self.session)
        statuses = await _resolve_senders(customers, planned)
        rows = [
            NewLedgerRow(
                plan.context.tenant.id,
                plan.customer_id,
                plan.context.request.id,
                NewLedgerEntry(draft.action, draft.data, draft.source_event_id, draft.dedupe_key, draft.occurred_at),
            )
            for plan in planned
            if plan.customer_id is not None
            for draft in plan.drafts
        ]
        inserted = await append_ledger_rows(self.session, rows, source=LEDGER_SOURCE)
        self.recorded += len(inserted)
        await customers.apply_profile_changes(_profile_changes(planned, inserted, statuses))


async def _plan(context: InboundRequest) -> _Planned | None:
    """A request's ledger drafts and sender, or None (nothing mapped, or no identifier: logged)."""
    drafts = plan_ledger_entries(
        context.payload, context.tenant.inbound_mappings, request_id=context.request.id, received_at=context.received_at
    )
    if not drafts:
        return None
    inbound = context.inbound
    lookup = resolve_identifier(context.payload, inbound.customer_identifier_field, inbound.loyalty_identifier_field)
    if lookup.value is None:
        await context.log_error(ErrorSource.ENGINE_REQUEST, ErrorCode.MISSING_IDENTIFIER, lookup.problem or "")
        return None
    return _Planned(context, drafts, (context.tenant.id, inbound.loyalty_identifier_field, lookup.value))


async def _resolve_senders(customers: CustomerBatchRepository, planned: list[_Planned]) -> dict[tuple[str, str], str]:
    """Set each plan's customer id (None: rejected and logged), creating customers as the rules
    say, in queue order; returns the status of every customer involved, by (tenant_id, id)."""
    senders = list(dict.fromkeys(plan.sender for plan in planned))
    found: dict[SenderKey, Any] = {}
    by_id = [(tenant_id, value) for tenant_id, field_name, value in senders if field_name == CUSTOMER_ID_FIELD]
    for (tenant_id, customer_id), record in (await customers.find_by_ids(by_id)).items():
        found[(tenant_id, CUSTOMER_ID_FIELD, customer_id)] = record
    by_attribute = [sender for sender in senders if sender[1] != CUSTOMER_ID_FIELD]
    found.update(await customers.find_by_attributes(by_attribute))

    known: dict[SenderKey, tuple[str, str]] = {key: (record.id, record.status) for key, record in found.items()}
    created: dict[SenderKey, NewCustomer] = {}
    for plan in planned:
        tenant_id, field_name, value = plan.sender
        current = known.get(plan.sender)
        action = decide_customer(
            current[1] if current else None,
            yields_opt_in=any(draft.action == OPT_IN_ACTION for draft in plan.drafts),
            auto_subscribe=plan.context.inbound.auto_subscribe,
        )
        if action is CustomerAction.REJECT:
            await plan.context.log_error(
                ErrorSource.ENGINE_REQUEST,
                ErrorCode.CUSTOMER_NOT_FOUND,
                f"no customer with {plan.context.describe_identifier(value)}; "
                f"{len(plan.drafts)} loyalty event(s) skipped",
            )
            continue
        if action is not CustomerAction.USE_EXISTING:
            status = "active" if action is CustomerAction.CREATE_ACTIVE else "inactive"
            new = NewCustomer(
                tenant_id,
                new_customer_id(tenant_id, field_name, value),
                status,
                identifier_attributes(field_name, value),
            )
            created[plan.sender] = new
            known[plan.sender] = (new.id, status)
        plan.customer_id = known[plan.sender][0]

    statuses = {(key[0], customer_id): status for key, (customer_id, status) in known.items()}
    if created:
        # Another worker may have created some of them first: read back what is stored.
        await customers.create_if_absent(list(created.values()))
        stored = await customers.find_by_ids([(new.tenant_id, new.id) for new in created.values()])
        statuses.update({key: record.status for key, record in stored.items()})
    return statuses


def _profile_changes(
    planned: list[_Planned], inserted: set[tuple[str, str]], statuses: dict[tuple[str, str], str]
) -> list[ProfileChange]:
    """Per customer: the recorded opt_in/profile attributes merged in ledger order, and whether a
    recorded opt_in activates it."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    activate: set[tuple[str, str]] = set()
    for plan in planned:
        if plan.customer_id is None:
            continue
        customer = (plan.context.tenant.id, plan.customer_id)
        for draft in plan.drafts:
            if draft.action not in PROFILE_MERGING_ACTIONS or (customer[0], draft.dedupe_key) not in inserted:
                continue
            merged.setdefault(customer, {}).update(draft.data)
            if draft.action == OPT_IN_ACTION and statuses.get(customer) != "active":
                activate.add(customer)
    return [
        ProfileChange(
            tenant_id, customer_id, merged.get((tenant_id, customer_id), {}), (tenant_id, customer_id) in activate
        )
        for tenant_id, customer_id in dict.fromkeys([*merged, *activate])
    ]
