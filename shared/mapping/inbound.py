"""Inbound rules (CONTRACT §2-§3), pure: which mappings match which events, a request's priority,
the ledger entries a message yields and in which order, and how its sender resolves to a customer.

Messages and events are the decoded JSON (already validated by shared.inbound.schemas), so the
templates can reach every field, including ones the models do not name.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from shared.mapping.echo import is_echo
from shared.mapping.templates import render_attributes
from shared.vocabulary import EVENT_NAME_FIELD, CustomerStatus

OPT_IN_ACTION = "opt_in"
PROFILE_ACTION = "profile"
# Loyalty events whose attributes are merged into the customer's attributes when recorded.
PROFILE_MERGING_ACTIONS = frozenset({OPT_IN_ACTION, PROFILE_ACTION})
# The loyalty identifier field that means "the customer id itself".
CUSTOMER_ID_FIELD = "id"
MPID_FIELD = "mpid"
RAW_ENCODING = "raw"
MAX_CUSTOMER_ID_LENGTH = 128
# max_data_age_hours: events older than this (relative to the request's receipt) are not awarded.
DEFAULT_MAX_DATA_AGE_HOURS = 24
ANY_DATA_AGE_HOURS = -1
MAX_DATA_AGE_HOURS_LIMIT = 87_600  # ten years
# Namespace of generated customer ids: uuid5(namespace, "<tenant>/<field>/<value>").
CUSTOMER_ID_NAMESPACE = uuid.UUID("6f1c1f8e-52a4-4c8f-9a53-0c6b2f7a9d11")


@dataclass(frozen=True)
class MappingRule:
    """One inbound mapping of a tenant (Firehose event -> loyalty event), as its configuration has it."""

    loyalty_event: str
    event_type: str
    event_name: str | None
    priority: int
    attributes: dict[str, Any]


def event_name_of(event: Mapping[str, Any]) -> str | None:
    """The value a mapping's `event_name` is compared with: name, screen_name or action by type."""
    field = EVENT_NAME_FIELD.get(str(event.get("type")))
    value = event.get(field) if field else None
    return value if isinstance(value, str) else None


def mapping_matches(mapping: MappingRule, event: Mapping[str, Any]) -> bool:
    """Same event type and, when the mapping names an event, the same name."""
    if event.get("type") != mapping.event_type:
        return False
    return mapping.event_name is None or mapping.event_name == event_name_of(event)


def request_priority(mappings: Sequence[MappingRule], events: Iterable[Mapping[str, Any]]) -> int | None:
    """The lowest priority among the mappings that match any event; None when nothing matches."""
    lowest: int | None = None
    for event in events:
        for mapping in mappings:
            if (lowest is None or mapping.priority < lowest) and mapping_matches(mapping, event):
                lowest = mapping.priority
    return lowest


class LedgerDraft(NamedTuple):
    """One loyalty event to record, before the customer is known. (A named tuple: the worker makes
    one per mapped event, and a frozen dataclass costs several times as much to build.)"""

    action: str
    data: dict[str, Any]
    source_event_id: str | None
    dedupe_key: str
    occurred_at: datetime
    priority: int


def ledger_dedupe_key(request_id: str, event_id: str | None, event_index: int, mapping_position: int) -> str:
    """What makes a ledger entry once-only: request, event (its id, else its index) and mapping."""
    event_part = event_id if event_id else f"#{event_index}"
    return f"{request_id}/{event_part}/{mapping_position}"


def timestamp_ms_to_datetime(value: Any) -> datetime | None:
    """An epoch-milliseconds JSON integer as an aware UTC datetime; None when absent or absurd."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def oldest_accepted(received_at: datetime, max_data_age_hours: int) -> datetime | None:
    """The oldest occurred_at a request received at `received_at` may award; None for any age."""
    if max_data_age_hours == ANY_DATA_AGE_HOURS:
        return None
    return received_at - timedelta(hours=max_data_age_hours)


def is_too_old(occurred_at: datetime, received_at: datetime, max_data_age_hours: int) -> bool:
    """Whether an event that occurred at `occurred_at` is older than the tenant accepts
    (`max_data_age_hours` before the request was received; ANY_DATA_AGE_HOURS accepts all)."""
    oldest = oldest_accepted(received_at, max_data_age_hours)
    return oldest is not None and occurred_at < oldest


@dataclass(frozen=True)
class EventRequestPlan:
    """What an event request yields: ledger drafts in ledger order, and the events left out."""

    drafts: list[LedgerDraft]
    # Events a mapping matched but older than max_data_age_hours: not awarded (EVENT_TOO_OLD).
    too_old_events: int = 0
    # Events the bridge itself sent to mParticle (shared.mapping.echo), dropped before mapping.
    echo_events: int = 0


def _matching_mappings(
    candidates: Sequence[tuple[int, MappingRule]], event: Mapping[str, Any]
) -> list[tuple[int, MappingRule]]:
    """mapping_matches over the mappings of the event's type (with their positions), the event's
    name looked up once."""
    if not candidates:
        return []
    name = event_name_of(event)
    return [(position, m) for position, m in candidates if m.event_name is None or m.event_name == name]


def plan_event_request(
    message: Mapping[str, Any],
    mappings: Sequence[MappingRule],
    *,
    request_id: str,
    received_at: datetime,
    max_data_age_hours: int = ANY_DATA_AGE_HOURS,
) -> EventRequestPlan:
    """Every matching mapping of every event yields one entry; ascending priority, ties in event
    order (then mapping order). occurred_at is the event's timestamp, else the message's, else
    when the request was received. Echoed events and events too old are left out (counted);
    the others keep their position in the message, so dedupe keys never shift."""
    message_time = timestamp_ms_to_datetime(message.get("timestamp_ms")) or received_at
    oldest = oldest_accepted(received_at, max_data_age_hours)
    by_type: dict[Any, list[tuple[int, MappingRule]]] = {}
    for position, mapping in enumerate(mappings):
        by_type.setdefault(mapping.event_type, []).append((position, mapping))
    events = message.get("events") or []
    ordered: list[tuple[int, int, int, LedgerDraft]] = []
    too_old = echoes = 0
    for event_index, event in enumerate(events):
        if is_echo(event):
            echoes += 1
            continue
        matching = _matching_mappings(by_type.get(event.get("type"), ()), event)
        if not matching:
            continue
        occurred_at = timestamp_ms_to_datetime(event.get("timestamp_ms")) or message_time
        if oldest is not None and occurred_at < oldest:
            too_old += 1
            continue
        event_id = event.get("id") if isinstance(event.get("id"), str) else None
        for position, mapping in matching:
            draft = LedgerDraft(
                action=mapping.loyalty_event,
                data=render_attributes(mapping.attributes, event, message),
                source_event_id=event_id,
                dedupe_key=ledger_dedupe_key(request_id, event_id, event_index, position),
                occurred_at=occurred_at,
                priority=mapping.priority,
            )
            ordered.append((mapping.priority, event_index, position, draft))
    ordered.sort(key=lambda item: item[:3])
    return EventRequestPlan([draft for *_, draft in ordered], too_old_events=too_old, echo_events=echoes)


def plan_ledger_entries(
    message: Mapping[str, Any],
    mappings: Sequence[MappingRule],
    *,
    request_id: str,
    received_at: datetime,
) -> list[LedgerDraft]:
    """The drafts of plan_event_request, whatever the events' age."""
    return plan_event_request(message, mappings, request_id=request_id, received_at=received_at).drafts


@dataclass(frozen=True)
class IdentifierLookup:
    """The sender's identifier value, or why there is none."""

    value: str | None
    problem: str | None = None


def find_identifier(holder: Mapping[str, Any], customer_identifier_field: str) -> IdentifierLookup:
    """The configured identity of a message or user profile: `mpid`, else the first raw
    `user_identities` entry of that type. Hashed values cannot match a loyalty attribute."""
    if customer_identifier_field == MPID_FIELD:
        mpid = holder.get(MPID_FIELD)
        if isinstance(mpid, str) and mpid:
            return IdentifierLookup(mpid)
        return IdentifierLookup(None, "the message carries no mpid")
    hashed: list[str] = []
    for identity in holder.get("user_identities") or []:
        if identity.get("type") != customer_identifier_field:
            continue
        value = identity.get("value")
        encoding = identity.get("encoding") or RAW_ENCODING
        if encoding != RAW_ENCODING:
            hashed.append(str(encoding))
        elif isinstance(value, str) and value:
            return IdentifierLookup(value)
    if hashed:
        return IdentifierLookup(
            None, f"the `{customer_identifier_field}` identity is hashed ({', '.join(hashed)}), not raw"
        )
    return IdentifierLookup(None, f"no `{customer_identifier_field}` user identity in the message")


def resolve_identifier(
    holder: Mapping[str, Any], customer_identifier_field: str, loyalty_identifier_field: str
) -> IdentifierLookup:
    """find_identifier, refusing values that cannot be a customer id when the loyalty field is `id`."""
    lookup = find_identifier(holder, customer_identifier_field)
    if (
        lookup.value is not None
        and loyalty_identifier_field == CUSTOMER_ID_FIELD
        and len(lookup.value) > MAX_CUSTOMER_ID_LENGTH
    ):
        return IdentifierLookup(None, f"the identifier is longer than {MAX_CUSTOMER_ID_LENGTH} characters")
    return lookup


class CustomerAction(StrEnum):
    USE_EXISTING = "use_existing"
    CREATE_ACTIVE = "create_active"
    CREATE_INACTIVE = "create_inactive"
    REJECT = "reject"


def decide_customer(existing_status: str | None, *, yields_opt_in: bool, auto_subscribe: bool) -> CustomerAction:
    """A known customer is used; an unknown one is created active by an opt_in, else inactive with
    auto-subscribe, else the message is rejected (CUSTOMER_NOT_FOUND)."""
    if existing_status is not None:
        return CustomerAction.USE_EXISTING
    if yields_opt_in:
        return CustomerAction.CREATE_ACTIVE
    if auto_subscribe:
        return CustomerAction.CREATE_INACTIVE
    return CustomerAction.REJECT


def new_customer_id(tenant_id: str, loyalty_identifier_field: str, identifier: str) -> str:
    """The id of a customer created from `identifier`: the value itself when the loyalty field is
    `id`, else a deterministic uuid5, so concurrent jobs creating the same customer converge."""
    if loyalty_identifier_field == CUSTOMER_ID_FIELD:
        return identifier
    return str(uuid.uuid5(CUSTOMER_ID_NAMESPACE, f"{tenant_id}/{loyalty_identifier_field}/{identifier}"))


def identifier_attributes(loyalty_identifier_field: str, identifier: str) -> dict[str, Any]:
    """The attributes a new customer starts with: the identifier, unless it is the id itself."""
    return {} if loyalty_identifier_field == CUSTOMER_ID_FIELD else {loyalty_identifier_field: identifier}


# (tenant_id, loyalty identifier field, identifier value): how a sender is looked up.
SenderKey = tuple[str, str, str]
# (tenant_id, customer id)
CustomerKey = tuple[str, str]


@dataclass(frozen=True)
class KnownCustomer:
    id: str
    status: str


@dataclass(frozen=True)
class CustomerNeed:
    """A sender (event request or audience member) to resolve, with what may create it."""

    sender: SenderKey
    yields_opt_in: bool
    auto_subscribe: bool
    # False for look-ups only (removing a member from a list never creates a customer).
    may_create: bool = True


@dataclass(frozen=True)
class NewCustomer:
    tenant_id: str
    id: str
    status: CustomerStatus
    attributes: dict[str, Any]


@dataclass(frozen=True)
class CustomerDecisions:
    """Per need (same order): the customer id, or None when it is unknown and may not be created;
    and the customers to create (first creator decides the status)."""

    customer_ids: list[str | None]
    to_create: list[NewCustomer]


def decide_customers(needs: Sequence[CustomerNeed], found: Mapping[SenderKey, KnownCustomer]) -> CustomerDecisions:
    """decide_customer for each need in order: a customer created by an earlier need is known to
    the later ones."""
    known = dict(found)
    created: dict[SenderKey, NewCustomer] = {}
    customer_ids: list[str | None] = []
    for need in needs:
        current = known.get(need.sender)
        if current is None and not need.may_create:
            customer_ids.append(None)
            continue
        action = decide_customer(
            current.status if current else None, yields_opt_in=need.yields_opt_in, auto_subscribe=need.auto_subscribe
        )
        if action is CustomerAction.REJECT:
            customer_ids.append(None)
            continue
        if current is None:
            tenant_id, field_name, value = need.sender
            status = CustomerStatus.ACTIVE if action is CustomerAction.CREATE_ACTIVE else CustomerStatus.INACTIVE
            new = NewCustomer(
                tenant_id,
                new_customer_id(tenant_id, field_name, value),
                status,
                identifier_attributes(field_name, value),
            )
            created[need.sender] = new
            current = known[need.sender] = KnownCustomer(new.id, status)
        customer_ids.append(current.id)
    return CustomerDecisions(customer_ids, list(created.values()))


@dataclass(frozen=True)
class ProfileChange:
    """Attributes to merge into a customer's (top-level keys replaced), and whether to activate it."""

    tenant_id: str
    customer_id: str
    attributes: dict[str, Any]
    activate: bool


def profile_changes(
    ledger: Sequence[tuple[CustomerKey, Sequence[LedgerDraft]]],
    recorded: Collection[tuple[str, str]],
    statuses: Mapping[CustomerKey, str],
) -> list[ProfileChange]:
    """Per customer, from its drafts in ledger order: the attributes of the opt_in/profile entries
    actually recorded (`recorded` holds their (tenant_id, dedupe_key)) merged, later ones winning;
    and activation when a recorded opt_in meets a customer not `active` (per `statuses`).
    Entries already recorded before change nothing: re-processing is harmless."""
    merged: dict[CustomerKey, dict[str, Any]] = {}
    activate: set[CustomerKey] = set()
    for customer, drafts in ledger:
        for draft in drafts:
            if draft.action not in PROFILE_MERGING_ACTIONS or (customer[0], draft.dedupe_key) not in recorded:
                continue
            merged.setdefault(customer, {}).update(draft.data)
            if draft.action == OPT_IN_ACTION and statuses.get(customer) != CustomerStatus.ACTIVE:
                activate.add(customer)
    return [
        ProfileChange(customer[0], customer[1], merged.get(customer, {}), customer in activate)
        for customer in dict.fromkeys([*merged, *activate])
    ]
