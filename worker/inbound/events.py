"""Event requests, applied together (CONTRACT §3): consecutive event requests of a batch become
one run of a handful of statements, whatever their number:

1. plan each request's ledger entries (pure core), leaving out echoed events and events older than
   the tenant's max_data_age_hours (one EVENT_TOO_OLD entry per request);
2. resolve every sender at once (worker.inbound.resolution), creating customers as the rules say;
3. insert every ledger row at once (rows already recorded are skipped by their dedupe key);
4. merge recorded opt_in/profile attributes and activate, per customer, at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ErrorCode, ErrorSource
from shared.inbound.customers import CustomerBatchRepository, NewLedgerRow, append_ledger_rows
from shared.mapping.inbound import (
    OPT_IN_ACTION,
    CustomerNeed,
    LedgerDraft,
    plan_event_request,
    profile_changes,
    resolve_identifier,
)
from worker.inbound.context import RequestInApplication
from worker.inbound.resolution import resolve_customers

LEDGER_SOURCE = "mparticle"


@dataclass
class _Planned:
    context: RequestInApplication
    drafts: list[LedgerDraft]
    need: CustomerNeed
    customer_id: str | None = None


@dataclass
class EventRun:
    """Consecutive event requests of a batch, applied together by `apply`."""

    session: AsyncSession
    pending: list[RequestInApplication] = field(default_factory=list)
    recorded: int = 0
    echo_events_dropped: int = 0
    # Echoed events per tenant, for the daily ECHO_DROPPED summary.
    echoes_by_tenant: dict[str, int] = field(default_factory=dict)

    def add(self, context: RequestInApplication) -> None:
        self.pending.append(context)

    async def apply(self) -> None:
        """Apply the pending requests in one pass (in the caller's transaction)."""
        contexts, self.pending = self.pending, []
        planned = [plan for context in contexts if (plan := await self._plan(context)) is not None]
        if not planned:
            return
        customers = CustomerBatchRepository(self.session)
        resolved = await resolve_customers(customers, [plan.need for plan in planned])
        for plan, customer_id in zip(planned, resolved.customer_ids, strict=True):
            plan.customer_id = customer_id
            if customer_id is None:
                await plan.context.log_error(
                    ErrorSource.ENGINE_REQUEST,
                    ErrorCode.CUSTOMER_NOT_FOUND,
                    f"no customer with {plan.context.describe_identifier(plan.need.sender[2])}; "
                    f"{len(plan.drafts)} loyalty event(s) skipped",
                )
        rows = [
            NewLedgerRow(plan.context.tenant.id, plan.customer_id, plan.context.request_id, draft)
            for plan in planned
            if plan.customer_id is not None
            for draft in plan.drafts
        ]
        inserted = await append_ledger_rows(self.session, rows, source=LEDGER_SOURCE)
        self.recorded += len(inserted)
        ledger = []
        for plan in planned:
            if plan.customer_id is not None:
                tenant_id = plan.context.tenant.id
                plan.context.ledger_events_recorded += sum(
                    (tenant_id, draft.dedupe_key) in inserted for draft in plan.drafts
                )
                ledger.append(((tenant_id, plan.customer_id), plan.drafts))
        await customers.apply_profile_changes(profile_changes(ledger, inserted, resolved.statuses))

    async def _plan(self, context: RequestInApplication) -> _Planned | None:
        """A request's ledger drafts and sender, or None (nothing mapped, or no identifier: logged)."""
        inbound = context.inbound
        plan = plan_event_request(
            context.payload,
            context.tenant.inbound_mappings,
            request_id=context.request_id,
            received_at=context.received_at,
            max_data_age_hours=inbound.max_data_age_hours,
        )
        if plan.echo_events:
            self.echo_events_dropped += plan.echo_events
            tenant_id = context.tenant.id
            self.echoes_by_tenant[tenant_id] = self.echoes_by_tenant.get(tenant_id, 0) + plan.echo_events
        if plan.too_old_events:
            await context.log_error(
                ErrorSource.ENGINE_REQUEST,
                ErrorCode.EVENT_TOO_OLD,
                f"{plan.too_old_events} event(s) older than max_data_age_hours "
                f"({inbound.max_data_age_hours}) when received; not awarded",
            )
        if not plan.drafts:
            return None
        lookup = resolve_identifier(
            context.payload, inbound.customer_identifier_field, inbound.loyalty_identifier_field
        )
        if lookup.value is None:
            await context.log_error(ErrorSource.ENGINE_REQUEST, ErrorCode.MISSING_IDENTIFIER, lookup.problem or "")
            return None
        need = CustomerNeed(
            (context.tenant.id, inbound.loyalty_identifier_field, lookup.value),
            yields_opt_in=any(draft.action == OPT_IN_ACTION for draft in plan.drafts),
            auto_subscribe=inbound.auto_subscribe,
        )
        return _Planned(context, plan.drafts, need)
