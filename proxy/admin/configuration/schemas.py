"""Request and response schemas of the tenant and configuration admin routes (CONTRACT §5).

Every check a client can get wrong lives here (field types in fields.py), so a bad body is a 422 with the error envelope
before any SQL runs. Strings are stored exactly as written (no trimming, no case folding).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    computed_field,
    field_validator,
    model_validator,
)

from proxy.admin.configuration.fields import TENANT_ID_PATTERN as TENANT_ID_PATTERN  # re-exported
from proxy.admin.configuration.fields import (
    ApiCredential,
    ApiUrl,
    FirehoseIdentityType,
    LoyaltyField,
    S2SIdentityKey,
    TenantName,
    integral,
)
from shared.mapping.inbound import ANY_DATA_AGE_HOURS, MAX_DATA_AGE_HOURS_LIMIT
from shared.outbound.hosts import POD_API_URLS, pod_api_url, pod_of
from shared.tenants.config import DEFAULT_INBOUND, OutboundConfig
from shared.tenants.repository import InboundSettingsView
from shared.vocabulary import (
    DEFAULT_S2S_API_URL,
)


def request_example(example: dict[str, Any]) -> ConfigDict:
    """A request example for /docs."""
    return ConfigDict(json_schema_extra={"examples": [example]})


class InputModel(BaseModel):
    """Bodies reject unknown fields, so a typo is a 422 instead of a silently ignored setting."""

    model_config = ConfigDict(extra="forbid")


class _ReadOnlyTolerantInput(InputModel):
    """A settings body that may be a GET response sent back: its read-only fields are ignored."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _drop_read_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if key not in cls.read_only_fields}
        return data


# --- tenants ------------------------------------------------------------------------------------


class TenantCreate(InputModel):
    id: Annotated[str, Field(pattern=TENANT_ID_PATTERN, description="lower-case letters, digits, `_`, `-`; 1-64")]
    name: TenantName

    model_config = request_example({"id": "acme-prod", "name": "ACME production"})


class TenantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    created_at: datetime
    connected: bool = Field(description="true once outbound settings are saved, until a disconnect")
    outbound_paused_at: datetime | None = Field(
        default=None, description="since when outbound delivery is paused (POST …/outbound/pause); null when it is not"
    )


class TenantCreated(TenantRead):
    engine_api_key: str = Field(description="the loyalty engine's key for the outbound API; shown only once")


class EngineKeyRead(BaseModel):
    engine_api_key: str = Field(description="the new engine key; the previous one stops working at once")


# --- outbound settings --------------------------------------------------------------------------


MParticlePod = Literal["US1", "US2", "EU1", "AU1"]
_POD_DESCRIPTION = "mParticle data pod: " + ", ".join(f"{pod} = {urls[0]}" for pod, urls in POD_API_URLS.items())


class OutboundSettingsUpdate(_ReadOnlyTolerantInput):
    """PUT replaces every field; omitted ones take their defaults, except `api_secret` (kept).

    `pod` is a shorthand for `api_url`: it fills in that pod's S2S URL (and wins over an `api_url`
    sent with it, so a GET body sent back with a new `pod` moves the tenant to that pod).
    A host other than mParticle's own (`https://*.mparticle.com`) must be named in
    OUTBOUND_ALLOWED_HOSTS (else 422)."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset({"api_secret_set"})

    api_url: ApiUrl = Field(
        default=DEFAULT_S2S_API_URL,
        description="S2S base URL: `https://*.mparticle.com`, or a host named in the deployment's"
        " OUTBOUND_ALLOWED_HOSTS (any other host is refused with 422)",
    )
    pod: MParticlePod | None = Field(default=None, exclude=True, description=_POD_DESCRIPTION)
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

    @model_validator(mode="after")
    def _pod_fills_api_url(self) -> OutboundSettingsUpdate:
        if self.pod is not None:
            self.api_url = pod_api_url(self.pod)
        return self

    model_config = request_example(
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

    @classmethod
    def of(cls, config: OutboundConfig) -> OutboundSettingsRead:
        """The stored settings as shown: the secret only as whether one is stored."""
        values = dataclasses.asdict(config)
        values["api_secret_set"] = bool(values.pop("api_secret_encrypted"))
        return cls.model_validate(values)

    @computed_field(description="the mParticle pod `api_url` points at, or null for another URL")  # type: ignore[prop-decorator]
    @property
    def pod(self) -> MParticlePod | None:
        return cast(MParticlePod | None, pod_of(self.api_url))


# --- inbound settings ---------------------------------------------------------------------------


class InboundSettingsUpdate(_ReadOnlyTolerantInput):
    """PUT replaces every field; omitted ones take their defaults."""

    read_only_fields: ClassVar[frozenset[str]] = frozenset({"authentication_token"})

    customer_identifier_field: FirehoseIdentityType = Field(
        default=DEFAULT_INBOUND.customer_identifier_field,
        description="Firehose identity type that identifies the sender",
    )
    loyalty_identifier_field: LoyaltyField = Field(
        default=DEFAULT_INBOUND.loyalty_identifier_field,
        description="loyalty customer attribute it is matched against (`id` = customer id)",
    )
    track_audience_data: StrictBool = DEFAULT_INBOUND.track_audience_data
    auto_subscribe: StrictBool = DEFAULT_INBOUND.auto_subscribe
    max_data_age_hours: Annotated[StrictInt, BeforeValidator(integral)] = Field(
        default=DEFAULT_INBOUND.max_data_age_hours,
        json_schema_extra={
            "anyOf": [{"const": ANY_DATA_AGE_HOURS}, {"minimum": 1, "maximum": MAX_DATA_AGE_HOURS_LIMIT}]
        },
        description=f"events older than this many hours when received are not awarded (EVENT_TOO_OLD);"
        f" {ANY_DATA_AGE_HOURS} accepts any age, else 1 to {MAX_DATA_AGE_HOURS_LIMIT}",
    )

    @field_validator("max_data_age_hours")
    @classmethod
    def _sane_data_age(cls, value: int) -> int:
        if value != ANY_DATA_AGE_HOURS and not 1 <= value <= MAX_DATA_AGE_HOURS_LIMIT:
            raise ValueError(f"must be {ANY_DATA_AGE_HOURS} (any age) or 1 to {MAX_DATA_AGE_HOURS_LIMIT}")
        return value

    model_config = request_example(
        {
            "customer_identifier_field": "email",
            "loyalty_identifier_field": "email",
            "track_audience_data": True,
            "auto_subscribe": False,
            "max_data_age_hours": 24,
        }
    )


class InboundSettingsRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_identifier_field: str
    loyalty_identifier_field: str
    track_audience_data: bool
    auto_subscribe: bool
    max_data_age_hours: int
    authentication_token: str | None = Field(
        description="paste into mParticle's `authenticationToken` account setting (with `loyaltyEnvironment` = the"
        " tenant id)"
    )

    @classmethod
    def of(cls, view: InboundSettingsView) -> InboundSettingsRead:
        """The stored (or default) settings and the inbound token."""
        return cls.model_validate(
            {**dataclasses.asdict(view.settings), "authentication_token": view.authentication_token}
        )


class AuthenticationTokenRead(BaseModel):
    authentication_token: str = Field(description="the new inbound token; the previous one stops working")
