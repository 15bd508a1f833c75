"""Audiences become customer lists (CONTRACT §3), only for tenants that track audience data.

- audience_subscription_request: `add` creates the audience's list (idempotent), `update` renames
  it, `remove` deletes it with its memberships; other actions are ignored.
- audience_membership_change_request: the user profiles are resolved like event senders, all at
  once (worker.inbound.resolution; an unknown one is created inactive with auto-subscribe, and
  only when the profile is added somewhere); then `add` puts it on the audience's list
  (created when missing; refused on an inactive list: LIST_INACTIVE) and `delete` takes it off.
  `attribute_update` is ignored: audience user attributes are not loyalty data.

Errors are aggregated to one log entry per kind (and per inactive list) per request, so a bulk
membership message of thousands of profiles cannot flood the log.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from shared.errors import ErrorCode, ErrorSource
from shared.inbound.customers import CustomerBatchRepository
from shared.inbound.schemas import AudienceMembership, AudienceMembershipChangeRequest, AudienceSubscriptionRequest
from shared.mapping.inbound import CustomerNeed, resolve_identifier
from shared.models import CustomerList
from shared.vocabulary import ListStatus
from worker.inbound.context import RequestInApplication
from worker.inbound.resolution import resolve_customers

ADD, UPDATE, REMOVE = "add", "update", "remove"
MEMBER_ADD, MEMBER_DELETE = "add", "delete"
# How many identifiers a log message quotes before summarising the rest as a count.
QUOTED_IDENTIFIERS = 5


def list_name(audience_id: int, audience_name: str | None) -> str:
    return audience_name or f"Audience {audience_id}"


async def apply_audience_subscription(context: RequestInApplication, request: AudienceSubscriptionRequest) -> str:
    """Create, rename or delete the list bound to the audience."""
    if not context.inbound.track_audience_data:
        return "audience data not tracked"
    lists = context.lists
    name = list_name(request.audience_id, request.audience_name)
    if request.action == ADD:
        await lists.ensure_for_audience(request.audience_id, name)
    elif request.action == UPDATE:
        await lists.rename_for_audience(request.audience_id, name)
    elif request.action == REMOVE:
        await lists.delete_for_audience(request.audience_id)
    else:
        return f"subscription action {request.action!r} ignored"
    return f"audience {request.audience_id}: {request.action}"


def _quoted(identifiers: list[str]) -> str:
    shown = ", ".join(repr(identifier) for identifier in identifiers[:QUOTED_IDENTIFIERS])
    more = len(identifiers) - QUOTED_IDENTIFIERS
    return shown + (f" and {more} more" if more > 0 else "")


class _MembershipRun:
    """State of one membership message: lists by audience, and what went wrong (for the log)."""

    def __init__(self, context: RequestInApplication) -> None:
        self.context = context
        self.lists: dict[int, CustomerList | None] = {}
        self.missing_identifier: list[str] = []
        self.not_found: list[str] = []
        self.refused_by_list: Counter[int] = Counter()
        self.added = 0
        self.removed = 0

    async def list_for(self, audience: AudienceMembership, *, create: bool) -> CustomerList | None:
        """The audience's list (created when `create`); looked up once per message."""
        audience_id = audience.audience_id
        known = self.lists.get(audience_id)
        if known is not None or (audience_id in self.lists and not create):
            return known
        repository = self.context.lists
        if create:
            known = await repository.ensure_for_audience(audience_id, list_name(audience_id, audience.audience_name))
        else:
            known = await repository.find_for_audience(audience_id)
        self.lists[audience_id] = known
        return known

    def need_of(self, raw_profile: dict[str, Any], audiences: list[AudienceMembership]) -> CustomerNeed | None:
        """What resolving the profile's customer takes; None when the profile changes no list or
        carries no identifier (noted for the log)."""
        relevant = [a for a in audiences if a.action in (MEMBER_ADD, MEMBER_DELETE)]
        if not relevant:
            return None
        inbound = self.context.inbound
        lookup = resolve_identifier(raw_profile, inbound.customer_identifier_field, inbound.loyalty_identifier_field)
        if lookup.value is None:
            self.missing_identifier.append(lookup.problem or "no identifier")
            return None
        adds = any(a.action == MEMBER_ADD for a in relevant)
        return CustomerNeed(
            (self.context.tenant.id, inbound.loyalty_identifier_field, lookup.value),
            yields_opt_in=False,
            auto_subscribe=inbound.auto_subscribe,
            may_create=adds,  # removing an unknown customer from a list is simply nothing to do
        )

    async def apply_profile(
        self, need: CustomerNeed, customer_id: str | None, audiences: list[AudienceMembership]
    ) -> None:
        if customer_id is None:
            if need.may_create:
                self.not_found.append(need.sender[2])
            return
        for audience in audiences:
            if audience.action not in (MEMBER_ADD, MEMBER_DELETE):
                continue
            customer_list = await self.list_for(audience, create=audience.action == MEMBER_ADD)
            if customer_list is None:
                continue
            if audience.action == MEMBER_DELETE:
                self.removed += await self.context.lists.remove_member(customer_list.id, customer_id)
            elif customer_list.status != ListStatus.ACTIVE:
                self.refused_by_list[customer_list.id] += 1
            else:
                self.added += await self.context.lists.add_member(customer_list.id, customer_id)

    async def log_problems(self) -> None:
        context = self.context
        if self.missing_identifier:
            reasons = sorted(set(self.missing_identifier))
            await context.log_error(
                ErrorSource.ENGINE_REQUEST,
                ErrorCode.MISSING_IDENTIFIER,
                f"{len(self.missing_identifier)} user profile(s) skipped: {'; '.join(reasons)}",
            )
        if self.not_found:
            await context.log_error(
                ErrorSource.ENGINE_REQUEST,
                ErrorCode.CUSTOMER_NOT_FOUND,
                f"{len(self.not_found)} user profile(s) match no customer by "
                f"{context.inbound.customer_identifier_field} -> {context.inbound.loyalty_identifier_field}: "
                f"{_quoted(self.not_found)}",
            )
        lists_by_id = {lst.id: lst for lst in self.lists.values() if lst is not None}
        for list_id, refused in sorted(self.refused_by_list.items()):
            customer_list = lists_by_id[list_id]
            await context.log_error(
                ErrorSource.ENGINE_PROCESSING,
                ErrorCode.LIST_INACTIVE,
                f"list {customer_list.name!r} (id {list_id}, audience {customer_list.audience_id}) is inactive: "
                f"{refused} customer(s) not added",
            )


async def apply_membership_change(context: RequestInApplication, request: AudienceMembershipChangeRequest) -> str:
    """Add and remove the profiles' customers to and from the audiences' lists."""
    if not context.inbound.track_audience_data:
        return "audience data not tracked"
    run = _MembershipRun(context)
    raw_profiles: list[dict[str, Any]] = context.payload.get("user_profiles") or []
    wanted = [
        (need, profile.audiences)
        for raw_profile, profile in zip(raw_profiles, request.user_profiles, strict=True)
        if (need := run.need_of(raw_profile, profile.audiences)) is not None
    ]
    resolved = await resolve_customers(CustomerBatchRepository(context.session), [need for need, _ in wanted])
    for (need, audiences), customer_id in zip(wanted, resolved.customer_ids, strict=True):
        await run.apply_profile(need, customer_id, audiences)
    await run.log_problems()
    return f"{run.added} membership(s) added, {run.removed} removed"
