"""Request and response bodies of the outbound API (CONTRACT §6)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

from shared.mapping.outbound import timestamp_ms
from shared.vocabulary import S2S_CUSTOM_EVENT_TYPES

MAX_NAME_CHARS = 256


def _customer(value: dict[str, Any], *, require_id: bool) -> dict[str, Any]:
    customer_id = value.get("id")
    if customer_id is None:
        if require_id:
            raise ValueError("the customer needs an `id`")
        return value
    if isinstance(customer_id, float) and customer_id.is_integer():  # JSON Schema's integer includes 1.0
        customer_id = int(customer_id)
        value = {**value, "id": customer_id}
    if isinstance(customer_id, bool) or not isinstance(customer_id, str | int) or str(customer_id).strip() == "":
        raise ValueError("the customer `id` must be a non-empty string or an integer")
    return value


def _customer_with_id(value: dict[str, Any]) -> dict[str, Any]:
    return _customer(value, require_id=True)


def _customer_any(value: dict[str, Any]) -> dict[str, Any]:
    return _customer(value, require_id=False)


def _occurred_at(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("occurred_at must be an ISO 8601 date-time or epoch milliseconds")
    try:
        return timestamp_ms(value)
    except ValueError as exc:
        raise ValueError(f"occurred_at must be an ISO 8601 date-time or epoch milliseconds ({exc})") from exc


def _custom_event_type(value: str) -> str:
    if value not in S2S_CUSTOM_EVENT_TYPES:
        raise ValueError(f"event_type must be one of: {', '.join(sorted(S2S_CUSTOM_EVENT_TYPES))}")
    return value


# What _customer accepts as an `id`, stated for OpenAPI: a non-blank string or an integer.
_CUSTOMER_ID_SCHEMA = {"anyOf": [{"type": "string", "pattern": r"\S"}, {"type": "integer"}]}
CustomerWithId = Annotated[
    dict[str, Any],
    AfterValidator(_customer_with_id),
    Field(
        description="the loyalty customer: `id` plus any attributes",
        examples=[{"id": "c-1", "email": "a@x.io"}],
        json_schema_extra={"required": ["id"], "properties": {"id": _CUSTOMER_ID_SCHEMA}},
    ),
]
Customer = Annotated[
    dict[str, Any],
    AfterValidator(_customer_any),
    Field(description="the loyalty customer (`id`, `email`, the configured identifier field, …)"),
]
OccurredAt = Annotated[
    int | None,
    BeforeValidator(_occurred_at),
    Field(description="ISO 8601 date-time or epoch milliseconds; default: when the call is accepted"),
]
EventName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]


class CustomerUpdateRequest(BaseModel):
    """A customer's attributes changed: every sync field present is sent as a user attribute."""

    model_config = ConfigDict(extra="forbid")

    customer: CustomerWithId


class EventRequest(BaseModel):
    """A loyalty event; sent as a custom event when an external event maps its `action`."""

    model_config = ConfigDict(extra="forbid")

    customer: Customer
    action: EventName
    data: dict[str, Any] = Field(default_factory=dict)
    occurred_at: OccurredAt = None


class MarketingCommunicationRequest(BaseModel):
    """The workflow action "Trigger marketing communication": one custom event with `data` as attributes."""

    model_config = ConfigDict(extra="forbid")

    customer: Customer
    event_name: EventName
    event_type: Annotated[str, AfterValidator(_custom_event_type)] = Field(
        description="an S2S custom_event_type: " + ", ".join(sorted(S2S_CUSTOM_EVENT_TYPES)),
        json_schema_extra={"enum": list[JsonValue](sorted(S2S_CUSTOM_EVENT_TYPES))},
    )
    data: dict[str, Any] = Field(default_factory=dict)
    occurred_at: OccurredAt = None


class OutboundAccepted(BaseModel):
    """202: the message is stored (`queued`) and will be delivered, or there was nothing to send."""

    message_id: uuid.UUID | None
    status: Literal["queued", "skipped"]
