"""Request and response schemas of the ordered configuration lists (CONTRACT §5): sync fields,
external events and inbound mappings, each read and replaced as a whole."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from proxy.admin.configuration.fields import (
    MAX_LIST_ITEMS,
    MAX_PRIORITY,
    MIN_PRIORITY,
    Attributes,
    CustomEventType,
    EventName,
    FirehoseEventType,
    LoyaltyEvent,
    LoyaltyField,
    RemoteField,
    integral,
)
from proxy.admin.configuration.schemas import InputModel, request_example
from shared.vocabulary import EVENT_NAME_FIELD, RESERVED_USER_ATTRIBUTES

# --- sync fields --------------------------------------------------------------------------------


class SyncFieldItem(InputModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")

    loyalty_field: LoyaltyField
    remote_field: RemoteField = Field(description="mParticle user attribute; `$` names must be reserved ones")

    @field_validator("remote_field")
    @classmethod
    def _reserved_names_only(cls, value: str) -> str:
        if value.startswith("$") and value.lower() not in RESERVED_USER_ATTRIBUTES:
            raise ValueError(
                f"{value!r} is not a reserved mParticle attribute; `$` names must be one of: "
                + ", ".join(sorted(RESERVED_USER_ATTRIBUTES))
            )
        return value


class SyncFieldsRead(BaseModel):
    items: Annotated[list[SyncFieldItem], Field(max_length=MAX_LIST_ITEMS)]


class SyncFieldsUpdate(SyncFieldsRead, InputModel):
    @model_validator(mode="after")
    def _remote_fields_unique(self) -> SyncFieldsUpdate:
        _reject_duplicates([item.remote_field for item in self.items], "remote_field", fold_case=True)
        return self

    model_config = request_example(
        {
            "items": [
                {"loyalty_field": "first_name", "remote_field": "$firstname"},
                {"loyalty_field": "tier", "remote_field": "antavo_tier"},
            ]
        }
    )


# --- external events ----------------------------------------------------------------------------


class ExternalEventItem(InputModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")

    loyalty_event: LoyaltyEvent
    event_name: EventName
    custom_event_type: CustomEventType
    attributes: Attributes = Field(default_factory=dict, description="name -> template (`{data.path}`) or scalar")


class ExternalEventsRead(BaseModel):
    items: Annotated[list[ExternalEventItem], Field(max_length=MAX_LIST_ITEMS)]


class ExternalEventsUpdate(ExternalEventsRead, InputModel):
    @model_validator(mode="after")
    def _one_association_per_event(self) -> ExternalEventsUpdate:
        _reject_duplicates([item.loyalty_event for item in self.items], "loyalty_event")
        return self

    model_config = request_example(
        {
            "items": [
                {
                    "loyalty_event": "reward_claim",
                    "event_name": "Reward claimed",
                    "custom_event_type": "transaction",
                    "attributes": {"reward_id": "{reward}", "channel": "loyalty"},
                }
            ]
        }
    )


# --- inbound mappings ---------------------------------------------------------------------------


# _event_name_fits_type, stated in the schema: custom_event needs a name; only named types take one.
_EVENT_NAME_RULES: JsonDict = {
    "allOf": [
        {
            "if": {"properties": {"event_type": {"const": "custom_event"}}, "required": ["event_type"]},
            "then": {"required": ["event_name"], "properties": {"event_name": {"type": "string"}}},
        },
        {
            "if": {"properties": {"event_type": {"not": {"enum": list[JsonValue](sorted(EVENT_NAME_FIELD))}}}},
            "then": {"properties": {"event_name": {"type": "null"}}},
        },
    ]
}


class InboundMappingItem(InputModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid", json_schema_extra=_EVENT_NAME_RULES)

    loyalty_event: LoyaltyEvent
    event_type: FirehoseEventType
    event_name: EventName | None = Field(
        default=None,
        description="required for custom_event; allowed for screen_view, product_action, promotion_action",
    )
    priority: Annotated[StrictInt, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY), BeforeValidator(integral)] = Field(
        default=0, description="0..1000, lower is processed first"
    )
    attributes: Attributes = Field(
        default_factory=dict, description="name -> template (`{name}`, `{event.a.b}`, `{batch.a.b}`) or scalar"
    )

    @model_validator(mode="after")
    def _event_name_fits_type(self) -> InboundMappingItem:
        if self.event_type == "custom_event" and self.event_name is None:
            raise ValueError("event_name is required for custom_event")
        if self.event_name is not None and self.event_type not in EVENT_NAME_FIELD:
            raise ValueError(
                f"event_name is not allowed for {self.event_type}; only for: {', '.join(sorted(EVENT_NAME_FIELD))}"
            )
        return self


class InboundMappingsRead(BaseModel):
    items: Annotated[list[InboundMappingItem], Field(max_length=MAX_LIST_ITEMS)]


class InboundMappingsUpdate(InboundMappingsRead, InputModel):
    model_config = request_example(
        {
            "items": [
                {
                    "loyalty_event": "purchase",
                    "event_type": "product_action",
                    "event_name": "purchase",
                    "priority": 10,
                    "attributes": {"total": "{event.total_amount}", "sku": "{event.products.0.id}"},
                },
                {
                    "loyalty_event": "opt_in",
                    "event_type": "custom_event",
                    "event_name": "Sign up",
                    "priority": 0,
                    "attributes": {"email": "{batch.user_identities.email}"},
                },
            ]
        }
    )


def _reject_duplicates(values: list[str], field: str, *, fold_case: bool = False) -> None:
    seen: set[str] = set()
    for value in values:
        key = value.lower() if fold_case else value
        if key in seen:
            raise ValueError(f"duplicate {field} {value!r}: each may appear only once")
        seen.add(key)
