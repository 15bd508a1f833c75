"""Loyalty engine calls -> mParticle S2S batches (pure: no I/O; ids come from a factory).

Rules (CONTRACT §6, reference/notes/s2s.md):
- identities: `customer_id` (the customer id) and `email` by default, plus the configured pair
  `user_identities[customer_identifier_field] = customer[loyalty_identifier_field]`; only that pair
  with `sync_only_configured_identifiers`. No identity at all is a 422 NO_IDENTITY.
- user attributes: every sync field present in the customer; reserved `$` names are sent in the
  lower-case spelling of the S2S JSON reference (`$FirstName` -> `$firstname`), custom names as named.
- custom events: `event_name`, `custom_event_type`, `custom_attributes`, `timestamp_unixtime_ms`, a
  `source_message_id` and the echo marker in `custom_flags` (shared/mapping/echo.py: the Firehose
  side drops an event that comes back with it); the batch has a `source_request_id`. Both ids are
  generated here, once, and kept in the stored batch so resends carry the same ids.
- values S2S cannot take (objects, lists in custom attributes) are sent as compact JSON text.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from shared.errors import ErrorCode, Unprocessable
from shared.mapping.echo import echo_flags
from shared.mapping.templates import MISSING, render_template, walk_path
from shared.outbound.limits import MAX_BATCH_BYTES
from shared.vocabulary import RESERVED_USER_ATTRIBUTES, OutboundKind

IdFactory = Callable[[], str]

CUSTOMER_ID_FIELD = "id"
DEFAULT_ID_IDENTITY = "customer_id"
DEFAULT_EMAIL_IDENTITY = "email"
EMAIL_FIELD = "email"
# outbound_message.customer_id is a VARCHAR(128).
MAX_ORDERING_KEY_CHARS = 128
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# 9999-12-31T23:59:59.999Z
MAX_TIMESTAMP_MS = 253_402_300_799_999

_RESERVED_BY_LOWER = {name.lower(): name for name in RESERVED_USER_ATTRIBUTES}
_DIGITS = re.compile(r"[0-9]+")
_MISSING = object()


class IdentityRules(Protocol):
    """The identity part of a tenant's outbound settings."""

    @property
    def development(self) -> bool: ...
    @property
    def sync_only_configured_identifiers(self) -> bool: ...
    @property
    def loyalty_identifier_field(self) -> str: ...
    @property
    def customer_identifier_field(self) -> str: ...


@dataclass(frozen=True)
class SyncFieldRule:
    """One sync field of a tenant: a loyalty customer field sent as an mParticle user attribute."""

    loyalty_field: str
    remote_field: str


@dataclass(frozen=True)
class ExternalEventRule:
    """One external event of a tenant: a loyalty event sent as an mParticle custom event."""

    loyalty_event: str
    event_name: str
    custom_event_type: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class OutboundDraft:
    """A message to store: its kind, its per-customer ordering key and the complete S2S batch."""

    kind: OutboundKind
    customer_id: str
    batch: dict[str, Any]


# --- identities ---------------------------------------------------------------------------------


def _identity_value(value: Any) -> str | None:
    """Identities are strings; numbers are written out, anything else is no identity."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def customer_field(customer: Mapping[str, Any], field: str) -> Any:
    """A loyalty customer field (`id` is the customer id); _MISSING when absent."""
    return customer.get(field, _MISSING)


def build_user_identities(customer: Mapping[str, Any], rules: IdentityRules) -> dict[str, str]:
    """The batch's `user_identities`; raises 422 NO_IDENTITY when the customer yields none."""
    identities: dict[str, str] = {}
    if not rules.sync_only_configured_identifiers:
        customer_id = _identity_value(customer.get(CUSTOMER_ID_FIELD))
        if customer_id is not None:
            identities[DEFAULT_ID_IDENTITY] = customer_id
        email = customer.get(EMAIL_FIELD)
        if isinstance(email, str) and email.strip():
            identities[DEFAULT_EMAIL_IDENTITY] = email
    configured = _identity_value(customer.get(rules.loyalty_identifier_field))
    if configured is not None:
        identities[rules.customer_identifier_field] = configured
    if not identities:
        raise Unprocessable(
            f"the customer yields no identity (expected {rules.loyalty_identifier_field!r}"
            + ("" if rules.sync_only_configured_identifiers else ", 'id' or 'email'")
            + ")",
            code=ErrorCode.NO_IDENTITY,
        )
    return identities


def ordering_key(customer: Mapping[str, Any], identities: Mapping[str, str]) -> str:
    """The customer a message belongs to (its delivery order is kept per key): the customer id,
    else the first identity sent; a key longer than MAX_ORDERING_KEY_CHARS is replaced by its hash."""
    customer_id = _identity_value(customer.get(CUSTOMER_ID_FIELD))
    key = customer_id if customer_id is not None else next(iter(identities.values()))
    if len(key) > MAX_ORDERING_KEY_CHARS:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def environment_for(development: bool) -> str:
    """S2S `environment` of a tenant's batches."""
    return "development" if development else "production"


# --- attribute values ---------------------------------------------------------------------------


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _scalar(value: Any) -> Any:
    """A scalar as S2S (and JSON) can carry it: integers beyond 64 bits and NaN/Infinity as text."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else str(value)
    return value if math.isfinite(value) else str(value)


def _json_text(value: Any) -> str:
    # The standard library, not orjson: it writes integers of any size.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def custom_attribute_value(value: Any) -> Any:
    """S2S custom attributes are flat scalars: objects and lists are sent as compact JSON text."""
    return _scalar(value) if _is_scalar(value) else _json_text(value)


def user_attribute_value(value: Any) -> Any:
    """User attributes may be scalars or lists of scalars; anything deeper is sent as JSON text."""
    if _is_scalar(value):
        return _scalar(value)
    if isinstance(value, list) and all(_is_scalar(item) for item in value):
        return [_scalar(item) for item in value]
    return _json_text(value)


def remote_attribute_name(remote_field: str) -> str:
    """Reserved `$` names in the lower-case S2S spelling (matched case-insensitively); custom as named."""
    return _RESERVED_BY_LOWER.get(remote_field.lower(), remote_field)


def build_user_attributes(customer: Mapping[str, Any], sync_fields: Iterable[SyncFieldRule]) -> dict[str, Any]:
    """`user_attributes` from every sync field whose loyalty field is present in the customer."""
    attributes: dict[str, Any] = {}
    for rule in sync_fields:
        value = customer_field(customer, rule.loyalty_field)
        if value is not _MISSING:
            attributes[remote_attribute_name(rule.remote_field)] = user_attribute_value(value)
    return attributes


# --- templates ----------------------------------------------------------------------------------
# The inbound template rules (shared/mapping/templates.py), with references looked up in `data`.


def lookup_path(data: Any, path: str) -> Any:
    """`name` as a key of `data`, else a dotted path (`a.b.0`) through objects and lists; MISSING."""
    if isinstance(data, Mapping) and path in data:
        return data[path]
    return walk_path(data, path)


def render_custom_attributes(templates: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """Custom attributes of an external event: each template rendered over `data`; a missing
    reference omits the attribute; values are flattened for S2S."""
    attributes: dict[str, Any] = {}
    for name, template in templates.items():
        value = render_template(template, lambda reference: lookup_path(data, reference))
        if value is not MISSING:
            attributes[name] = custom_attribute_value(value)
    return attributes


# --- timestamps ---------------------------------------------------------------------------------


def timestamp_ms(value: int | float | str) -> int:
    """Unix milliseconds from epoch milliseconds (number or digits) or an ISO 8601 date-time
    (UTC when it has no offset). Raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a timestamp cannot be a boolean")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a timestamp must be a finite number")
    if isinstance(value, int | float):
        millis = int(value)
    elif _DIGITS.fullmatch(value.strip()):
        millis = int(value.strip())
    else:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        millis = int(parsed.timestamp() * 1000)
    if not 0 <= millis <= MAX_TIMESTAMP_MS:
        raise ValueError("a timestamp must be between 1970 and 9999")
    return millis


# --- batches ------------------------------------------------------------------------------------


def encode_batch(batch: Mapping[str, Any]) -> bytes:
    """The JSON bytes sent for a batch (compact)."""
    return orjson.dumps(batch)


def check_batch_size(batch: Mapping[str, Any]) -> None:
    """422 BATCH_TOO_LARGE when one batch is over S2S's 128 KB."""
    size = len(encode_batch(batch))
    if size > MAX_BATCH_BYTES:
        raise Unprocessable(
            f"the S2S batch would be {size} bytes; mParticle accepts at most {MAX_BATCH_BYTES}",
            code=ErrorCode.BATCH_TOO_LARGE,
        )


def _custom_event(
    event_name: str, custom_event_type: str, custom_attributes: dict[str, Any], occurred_at_ms: int, new_id: IdFactory
) -> dict[str, Any]:
    return {
        "event_type": "custom_event",
        "data": {
            "event_name": event_name,
            "custom_event_type": custom_event_type,
            "timestamp_unixtime_ms": occurred_at_ms,
            "source_message_id": new_id(),
            "custom_attributes": custom_attributes,
            "custom_flags": echo_flags(),
        },
    }


def _draft(
    kind: OutboundKind,
    customer: Mapping[str, Any],
    rules: IdentityRules,
    new_id: IdFactory,
    **content: Any,
) -> OutboundDraft:
    identities = build_user_identities(customer, rules)
    batch = {
        "environment": environment_for(rules.development),
        "source_request_id": new_id(),
        "user_identities": identities,
        **content,
    }
    check_batch_size(batch)
    return OutboundDraft(kind=kind, customer_id=ordering_key(customer, identities), batch=batch)


def customer_update_draft(
    customer: Mapping[str, Any], rules: IdentityRules, sync_fields: Iterable[SyncFieldRule], new_id: IdFactory
) -> OutboundDraft:
    """A customer update: identities plus the synced `user_attributes`."""
    return _draft(
        OutboundKind.CUSTOMER_UPDATE,
        customer,
        rules,
        new_id,
        user_attributes=build_user_attributes(customer, sync_fields),
    )


def event_draft(
    customer: Mapping[str, Any],
    action: str,
    data: Mapping[str, Any],
    occurred_at_ms: int,
    rules: IdentityRules,
    external_events: Iterable[ExternalEventRule],
    new_id: IdFactory,
) -> OutboundDraft | None:
    """A loyalty event: one custom event per external event mapping `action` (in configured
    order); None when no external event maps it (the call is skipped)."""
    matching = [rule for rule in external_events if rule.loyalty_event == action]
    if not matching:
        return None
    # Identities first: a customer without identity is refused before any id is drawn.
    build_user_identities(customer, rules)
    events = [
        _custom_event(
            rule.event_name,
            rule.custom_event_type,
            render_custom_attributes(rule.attributes, data),
            occurred_at_ms,
            new_id,
        )
        for rule in matching
    ]
    return _draft(OutboundKind.EVENT, customer, rules, new_id, events=events)


def marketing_communication_draft(
    customer: Mapping[str, Any],
    event_name: str,
    event_type: str,
    data: Mapping[str, Any],
    occurred_at_ms: int,
    rules: IdentityRules,
    new_id: IdFactory,
) -> OutboundDraft:
    """The workflow action "Trigger marketing communication": one custom event with `data` as
    its custom attributes."""
    attributes = {name: custom_attribute_value(value) for name, value in data.items()}
    event = _custom_event(event_name, event_type, attributes, occurred_at_ms, new_id)
    return _draft(OutboundKind.MARKETING_COMMUNICATION, customer, rules, new_id, events=[event])
