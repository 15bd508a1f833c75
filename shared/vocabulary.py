"""The fixed vocabularies of both protocols, used for validation and mapping (CONTRACT §3, §5, §6)."""

from __future__ import annotations

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
