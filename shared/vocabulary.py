"""The fixed vocabularies of both protocols and of our own records, each declared once and used for
validation, mapping, the models' check constraints and the admin API's enums (CONTRACT §3, §5, §6)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class OutboundStatus(StrEnum):
    """Where an outbound message stands (CONTRACT §5)."""

    QUEUED = "queued"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Not delivered yet, and due for an attempt: what the dispatcher claims and a disconnect cancels.
WAITING_STATUSES: tuple[OutboundStatus, ...] = (OutboundStatus.QUEUED, OutboundStatus.RETRYING)


class OutboundKind(StrEnum):
    """Which outbound API call made a message (CONTRACT §6)."""

    CUSTOMER_UPDATE = "customer_update"
    EVENT = "event"
    MARKETING_COMMUNICATION = "marketing_communication"


class AttemptTrigger(StrEnum):
    """Why a delivery attempt was made: the schedule (first send, resends) or an operator's retry."""

    AUTOMATIC = "automatic"
    MANUAL_RETRY = "manual_retry"


class CustomerStatus(StrEnum):
    """A loyalty customer's status (CONTRACT §3)."""

    ACTIVE = "active"
    INACTIVE = "inactive"


class ListStatus(StrEnum):
    """A customer list's status: nobody can be added to an inactive list (CONTRACT §3, §5)."""

    ACTIVE = "active"
    INACTIVE = "inactive"


class DataSubjectRequestType(StrEnum):
    """The data subject request types the registration declares (firehose.md §4.6)."""

    ERASURE = "erasure"
    ACCESS = "access"
    PORTABILITY = "portability"


class DataSubjectOutcome(StrEnum):
    """What was done about a data subject request: access and portability are only acknowledged."""

    ERASED = "erased"
    NO_CUSTOMER = "no_customer"
    NO_IDENTITY = "no_identity"
    ACKNOWLEDGED = "acknowledged"


def sql_in(column: str, values: Iterable[str]) -> str:
    """SQL text `column IN ('a', 'b')` for check constraints and partial indexes (trusted values only)."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


# Firehose user identity types a tenant may resolve customers by (plus "mpid").
FIREHOSE_IDENTITY_TYPES: frozenset[str] = frozenset(
    {"customer", "email", "other", "mobile_number", "phone_number_2", "phone_number_3", "mpid"}
    | {f"other{n}" for n in range(2, 11)}
)

# S2S `user_identities` keys a tenant may send the configured identifier as.
S2S_IDENTITY_KEYS: frozenset[str] = frozenset(
    {"customer_id", "email", "other", "mobile_number", "phone_number_2", "phone_number_3"}
    | {f"other_id_{n}" for n in range(2, 11)}
)

# Firehose event types (firehose.md §5).
FIREHOSE_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "session_start",
        "session_end",
        "custom_event",
        "screen_view",
        "error",
        "privacy_setting_change",
        "user_attribute_change",
        "user_identity_change",
        "push_subscription",
        "application_state_transition",
        "push_message_receipt",
        "push_message_open",
        "product_action",
        "promotion_action",
        "impression",
        "attribution",
    }
)

# Which event field an inbound mapping's `event_name` is compared with, by event type.
EVENT_NAME_FIELD: dict[str, str] = {
    "custom_event": "name",
    "screen_view": "screen_name",
    "product_action": "action",
    "promotion_action": "action",
}

# S2S custom_event_type values (the docs' prose list).
S2S_CUSTOM_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "navigation",
        "location",
        "search",
        "transaction",
        "user_content",
        "user_preference",
        "social",
        "other",
        "media",
        "attribution",
    }
)

# Reserved mParticle user attributes, lower-case; remote fields are matched case-insensitively.
RESERVED_USER_ATTRIBUTES: frozenset[str] = frozenset(
    {"$age", "$gender", "$country", "$zip", "$city", "$state", "$address", "$firstname", "$lastname", "$mobile"}
)

DEFAULT_S2S_API_URL = "https://s2s.mparticle.com"
