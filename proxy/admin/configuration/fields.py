"""Field types of the configuration schemas: each check a client can get wrong, as a validator and,
where JSON Schema can say it, in the OpenAPI document too (what a client or a fuzzer reads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    FiniteFloat,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictBool,
    StrictInt,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from shared.vocabulary import (
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


# The validators above, stated in the OpenAPI document too (what a client or fuzzer reads).
_NO_NUL = Field(json_schema_extra={"pattern": r"^[^\x00]*$"})
_NOT_BLANK_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"
_NOT_BLANK = Field(json_schema_extra={"pattern": _NOT_BLANK_PATTERN})


def integral(value: Any) -> Any:
    # JSON Schema's `integer` includes 1.0; accept it as 1 (strings and 1.5 stay invalid).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass(frozen=True)
class _OneOf:
    """Annotated metadata of a string that must be one of `allowed` (documented as their enum)."""

    allowed: frozenset[str]
    what: str

    def check(self, value: str) -> str:
        if value not in self.allowed:
            raise ValueError(f"unknown {self.what} {value!r}; expected one of: {', '.join(sorted(self.allowed))}")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["enum"] = sorted(self.allowed)
        return json_schema


TenantName = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_printable), _NOT_BLANK]
ApiCredential = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_printable), _NOT_BLANK]
LoyaltyField = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_printable), _NOT_BLANK]


def _case_insensitive(word: str) -> str:
    return "".join(f"[{char.lower()}{char.upper()}]" if char.isalpha() else char for char in word)


# Not blank, and a `$` name only when it is a reserved one (case-insensitive).
_REMOTE_FIELD_SCHEMA = Field(
    json_schema_extra={
        "allOf": [
            {"pattern": r"^[^\x00]*[^\s\x00][^\x00]*$"},
            {
                "pattern": r"^([^$\x00][^\x00]*|\$("
                + "|".join(_case_insensitive(name.removeprefix("$")) for name in sorted(RESERVED_USER_ATTRIBUTES))
                + "))$"
            },
        ]
    }
)
RemoteField = Annotated[
    str, StringConstraints(min_length=1, max_length=256), AfterValidator(_printable), _REMOTE_FIELD_SCHEMA
]
LoyaltyEvent = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_printable), _NOT_BLANK]
EventName = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_printable), _NOT_BLANK]
AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_printable), _NOT_BLANK]
# A template ("{path}", "text {path}") or a literal: any JSON scalar.
AttributeValue = (
    Annotated[str, StringConstraints(max_length=4000), AfterValidator(_no_nul), _NO_NUL]
    | StrictBool
    | StrictInt
    | FiniteFloat
    | None
)
Attributes = Annotated[
    dict[AttributeName, AttributeValue],
    Field(
        max_length=MAX_ATTRIBUTES_PER_ITEM,
        # pydantic states the key pattern as patternProperties, which lets other keys through.
        json_schema_extra={"propertyNames": {"minLength": 1, "maxLength": 256, "pattern": _NOT_BLANK_PATTERN}},
    ),
]
S2SIdentityKey = Annotated[str, _OneOf(S2S_IDENTITY_KEYS, "S2S identity key")]
FirehoseIdentityType = Annotated[str, _OneOf(FIREHOSE_IDENTITY_TYPES, "Firehose identity type")]
CustomEventType = Annotated[str, _OneOf(S2S_CUSTOM_EVENT_TYPES, "custom_event_type")]
FirehoseEventType = Annotated[str, _OneOf(FIREHOSE_EVENT_TYPES, "Firehose event type")]


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


# The shape _http_url accepts: http(s), a host name or address, an optional port, a plain path.
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_API_URL_SCHEMA = {
    "format": "uri",
    "pattern": r"^https?://([A-Za-z0-9-]+\.)*[A-Za-z0-9-]+(:" + _PORT + r")?(/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?$",
}
ApiUrl = Annotated[
    str, StringConstraints(max_length=500), AfterValidator(_http_url), Field(json_schema_extra=_API_URL_SCHEMA)
]
