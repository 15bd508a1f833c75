"""Inbound rules (CONTRACT §2-§3), pure: which mappings match which events, a request's priority,
the ledger entries a message yields and in which order, and how its sender resolves to a customer.

Messages and events are the decoded JSON (already validated by shared.inbound.schemas), so the
templates can reach every field, including ones the models do not name.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from shared.mapping.templates import render_attributes
from shared.vocabulary import EVENT_NAME_FIELD

OPT_IN_ACTION = "opt_in"
PROFILE_ACTION = "profile"
# Loyalty events whose attributes are merged into the customer's attributes when recorded.
PROFILE_MERGING_ACTIONS = frozenset({OPT_IN_ACTION, PROFILE_ACTION})
# The loyalty identifier field that means "the customer id itself".
CUSTOMER_ID_FIELD = "id"
MPID_FIELD = "mpid"
RAW_ENCODING = "raw"
MAX_CUSTOMER_ID_LENGTH = 128
# Namespace of generated customer ids: uuid5(namespace, "<tenant>/<field>/<value>").
CUSTOMER_ID_NAMESPACE = uuid.UUID("6f1c1f8e-52a4-4c8f-9a53-0c6b2f7a9d11")


class MappingRule(Protocol):
    """What the rules need of an inbound mapping (shared.tenants.config.InboundMappingConfig)."""

    @property
    def loyalty_event(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def event_name(self) -> str | None: ...
    @property
    def priority(self) -> int: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...


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


@dataclass(frozen=True)
class LedgerDraft:
    """One loyalty event to record, before the customer is known."""

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


def plan_ledger_entries(
    message: Mapping[str, Any],
    mappings: Sequence[MappingRule],
    *,
    request_id: str,
    received_at: datetime,
) -> list[LedgerDraft]:
    """Every matching mapping of every event yields one entry; ascending priority, ties in event
    order (then mapping order). occurred_at is the event's timestamp, else the message's, else
    when the request was received."""
    message_time = timestamp_ms_to_datetime(message.get("timestamp_ms")) or received_at
    events = message.get("events") or []
    ordered: list[tuple[int, int, int, LedgerDraft]] = []
    for event_index, event in enumerate(events):
        event_id = event.get("id") if isinstance(event.get("id"), str) else None
        occurred_at = timestamp_ms_to_datetime(event.get("timestamp_ms")) or message_time
        for position, mapping in enumerate(mappings):
            if not mapping_matches(mapping, event):
                continue
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
    return [draft for *_, draft in ordered]


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


def merged_profile_attributes(drafts: Sequence[LedgerDraft], recorded_keys: Collection[str]) -> dict[str, Any]:
    """Attributes of the recorded opt_in/profile entries, merged in ledger order (later wins)."""
    merged: dict[str, Any] = {}
    for draft in drafts:
        if draft.action in PROFILE_MERGING_ACTIONS and draft.dedupe_key in recorded_keys:
            merged.update(draft.data)
    return merged


def records_opt_in(drafts: Sequence[LedgerDraft], recorded_keys: Collection[str]) -> bool:
    """Whether an opt_in entry was recorded (which activates an inactive customer)."""
    return any(draft.action == OPT_IN_ACTION and draft.dedupe_key in recorded_keys for draft in drafts)
