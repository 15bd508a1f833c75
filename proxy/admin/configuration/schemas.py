"""Request and response schemas of the tenant and configuration admin routes (CONTRACT §5).

Every check a client can get wrong lives here, so a bad body is a 422 with the error envelope
before any SQL runs. Strings are stored exactly as written (no trimming, no case folding).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from shared.errors import ErrorCode
from shared.vocabulary import (
    DEFAULT_S2S_API_URL,
    EVENT_NAME_FIELD,
    FIREHOSE_EVENT_TYPES,
    FIREHOSE_IDENTITY_TYPES,
    RESERVED_USER_ATTRIBUTES,
    S2S_CUSTOM_EVENT_TYPES,
    S2S_IDENTITY_KEYS,
)

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_LIST_ITEMS = 1000
MAX_ATTRIBUTES_PER_ITEM = 100
MIN_PRIORITY = 0
MAX_PRIORITY = 1000


def _no_nul(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL characters.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _printable(value: str) -> str:
    if not _no_nul(value).strip():
        raise ValueError("must not be blank")
    return value


def _member_of(allowed: frozenset[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; expected one of: {', '.join(sorted(allowed))}")
        return value

    return check


TenantName = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_printable)]
ApiCredential = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_printable)]
LoyaltyField = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_printable)]
RemoteField = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_printable)]
LoyaltyEvent = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_printable)]
EventName = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_printable)]
AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_printable)]
# A template ("{path}", "text {path}") or a literal: any JSON scalar.
AttributeValue = (
    Annotated[str, StringConstraints(max_length=4000), AfterValidator(_no_nul)]
    | StrictBool
    | StrictInt
    | FiniteFloat
    | None
)
Attributes = Annotated[dict[AttributeName, AttributeValue], Field(max_length=MAX_ATTRIBUTES_PER_ITEM)]
S2SIdentityKey = Annotated[
    str,
    AfterValidator(_member_of(S2S_IDENTITY_KEYS, "S2S identity key")),
    Field(json_schema_extra={"enum": sorted(S2S_IDENTITY_KEYS)}),
]
FirehoseIdentityType = Annotated[
    str,
    AfterValidator(_member_of(FIREHOSE_IDENTITY_TYPES, "Firehose identity type")),
    Field(json_schema_extra={"enum": sorted(FIREHOSE_IDENTITY_TYPES)}),
]
CustomEventType = Annotated[
    str,
    AfterValidator(_member_of(S2S_CUSTOM_EVENT_TYPES, "custom_event_type")),
    Field(json_schema_extra={"enum": sorted(S2S_CUSTOM_EVENT_TYPES)}),
]
FirehoseEventType = Annotated[
    str,
    AfterValidator(_member_of(FIREHOSE_EVENT_TYPES, "Firehose event type")),
    Field(json_schema_extra={"enum": sorted(FIREHOSE_EVENT_TYPES)}),
]


def _example(example: dict[str, Any]) -> ConfigDict:
    """A request example for /docs."""
    return ConfigDict(json_schema_extra={"examples": [example]})


class _Input(BaseModel):
    """Bodies reject unknown fields, so a typo is a 422 instead of a silently ignored setting."""

    model_config = ConfigDict(extra="forbid")


class _ReadOnlyTolerantInput(_Input):
    """A settings body that may be a GET response sent back: its read-only fields are ignored."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _drop_read_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if key not in cls.read_only_fields}
        return data


# --- errors -------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: ErrorCode
    message: str
    details: list[dict[str, Any]] | None = Field(default=None, description="422 only: `[{loc, msg}]` per problem")


class ErrorResponse(BaseModel):
    """The one error envelope of every route."""

    error: ErrorDetail


_ERROR_DESCRIPTIONS = {
    401: "missing or invalid admin API key (`UNAUTHORIZED`)",
    404: "unknown or malformed tenant id, or no such resource (`NOT_FOUND`)",
    409: "conflict: the tenant exists (`CONFLICT`) or is not connected (`NOT_CONNECTED`)",
    422: "validation failed (`VALIDATION_FAILED`); `details` says where and why",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses (401 is always included)."""
    return {
        status: {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[status]}
        for status in sorted({401, *statuses})
    }


# --- tenants ------------------------------------------------------------------------------------


class TenantCreate(_Input):
    id: Annotated[str, Field(pattern=TENANT_ID_PATTERN, description="lower-case letters, digits, `_`, `-`; 1-64")]
    name: TenantName

    model_config = _example({"id": "acme-prod", "name": "ACME production"})


class TenantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    created_at: datetime
    connected: bool = Field(description="true once outbound settings are saved, until a disconnect")


class TenantCreated(TenantRead):
    engine_api_key: str = Field(description="the loyalty engine's key for the outbound API; shown only once")


class EngineKeyRead(BaseModel):
    engine_api_key: str = Field(description="the new engine key; the previous one stops working at once")


# --- outbound settings --------------------------------------------------------------------------


def _http_url(value: str) -> str:
    if any(char.isspace() or ord(char) < 32 for char in value):
        raise ValueError("must not contain whitespace or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL such as https://s2s.mparticle.com")
    _ = parts.port  # raises ValueError on a malformed port
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment")
    return value


class OutboundSettingsUpdate(_ReadOnlyTolerantInput):
    """PUT replaces every field; omitted ones take their defaults, except `api_secret` (kept)."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset({"api_secret_set"})

    api_url: Annotated[str, StringConstraints(max_length=500), AfterValidator(_http_url)] = DEFAULT_S2S_API_URL
    api_key: ApiCredential
    api_secret: ApiCredential | None = Field(
        default=None, description="required on the first save; omit (or null) to keep the stored one"
    )
    development: StrictBool = False
    sync_only_configured_identifiers: StrictBool = False
    loyalty_identifier_field: LoyaltyField = Field(default="id", description="loyalty customer attribute (`id`)")
    customer_identifier_field: S2SIdentityKey = Field(
        default="customer_id", description="S2S identity key receiving the loyalty identifier"
    )

    model_config = _example(
        {
            "api_url": DEFAULT_S2S_API_URL,
            "api_key": "us1-0123456789abcdef",
            "api_secret": "s2s-secret-from-mparticle",
            "development": True,
            "sync_only_configured_identifiers": False,
            "loyalty_identifier_field": "id",
            "customer_identifier_field": "customer_id",
        }
    )


class OutboundSettingsRead(BaseModel):
    """The saved outbound settings. The secret is never returned, only whether one is stored."""

    model_config = ConfigDict(from_attributes=True)

    api_url: str
    api_key: str
    api_secret_set: bool
    development: bool
    sync_only_configured_identifiers: bool
    loyalty_identifier_field: str
    customer_identifier_field: str


# --- inbound settings ---------------------------------------------------------------------------


class InboundSettingsUpdate(_ReadOnlyTolerantInput):
    """PUT replaces every field; omitted ones take their defaults."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset({"authentication_token"})

    customer_identifier_field: FirehoseIdentityType = Field(
        default="customer", description="Firehose identity type that identifies the sender"
    )
    loyalty_identifier_field: LoyaltyField = Field(
        default="id", description="loyalty customer attribute it is matched against (`id` = customer id)"
    )
    track_audience_data: StrictBool = False
    auto_subscribe: StrictBool = False

    model_config = _example(
        {
            "customer_identifier_field": "email",
            "loyalty_identifier_field": "email",
            "track_audience_data": True,
            "auto_subscribe": False,
        }
    )


class InboundSettingsRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_identifier_field: str
    loyalty_identifier_field: str
    track_audience_data: bool
    auto_subscribe: bool
    authentication_token: str | None = Field(
        description="paste into mParticle's `authenticationToken` account setting (with `loyaltyEnvironment` = the"
        " tenant id)"
    )


class AuthenticationTokenRead(BaseModel):
    authentication_token: str = Field(description="the new inbound token; the previous one stops working")


# --- sync fields --------------------------------------------------------------------------------


class SyncFieldItem(_Input):
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


class SyncFieldsUpdate(SyncFieldsRead, _Input):
    @model_validator(mode="after")
    def _remote_fields_unique(self) -> SyncFieldsUpdate:
        _reject_duplicates([item.remote_field for item in self.items], "remote_field", fold_case=True)
        return self

    model_config = _example(
        {
            "items": [
                {"loyalty_field": "first_name", "remote_field": "$firstname"},
                {"loyalty_field": "tier", "remote_field": "antavo_tier"},
            ]
        }
    )


# --- external events ----------------------------------------------------------------------------


class ExternalEventItem(_Input):
    model_config = ConfigDict(from_attributes=True, extra="forbid")

    loyalty_event: LoyaltyEvent
    event_name: EventName
    custom_event_type: CustomEventType
    attributes: Attributes = Field(default_factory=dict, description="name -> template (`{data.path}`) or scalar")


class ExternalEventsRead(BaseModel):
    items: Annotated[list[ExternalEventItem], Field(max_length=MAX_LIST_ITEMS)]


class ExternalEventsUpdate(ExternalEventsRead, _Input):
    @model_validator(mode="after")
    def _one_association_per_event(self) -> ExternalEventsUpdate:
        _reject_duplicates([item.loyalty_event for item in self.items], "loyalty_event")
        return self

    model_config = _example(
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


class InboundMappingItem(_Input):
    model_config = ConfigDict(from_attributes=True, extra="forbid")

    loyalty_event: LoyaltyEvent
    event_type: FirehoseEventType
    event_name: EventName | None = Field(
        default=None,
        description="required for custom_event; allowed for screen_view, product_action, promotion_action",
    )
    priority: Annotated[StrictInt, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)] = Field(
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


class InboundMappingsUpdate(InboundMappingsRead, _Input):
    model_config = _example(
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
