"""Pydantic models of the Firehose requests mParticle sends (firehose.md §3-§5).

Two depths of validation: the proxy checks an event request's envelope and the head of each event
(`EventProcessingEnvelope`: what it authenticates, prioritises and answers with) and the worker the
whole message (`EventProcessingRequest`) before applying it. Every other type, rare and small, is
validated whole by both.

Tolerant where mParticle evolves (unknown fields kept, enum-like fields are plain strings, any
optional field may be missing) and strict where a wrong JSON type means a malformed message (no
"123" for an integer, no number for a string). Only the fields the bridge reads or routes on are
modelled; everything else rides along as extra fields and stays reachable by the templates.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

FIREHOSE_VERSION = "3.2.0"
# Request and event ids are stored in 128-character columns (and make up ledger dedupe keys).
MAX_ID_LENGTH = 128


class MessageType(StrEnum):
    """The request types the endpoint answers (anything else is UNKNOWN_MESSAGE_TYPE)."""

    MODULE_REGISTRATION = "module_registration_request"
    EVENT_PROCESSING = "event_processing_request"
    AUDIENCE_SUBSCRIPTION = "audience_subscription_request"
    AUDIENCE_MEMBERSHIP_CHANGE = "audience_membership_change_request"
    DSR_PROCESSING = "dsr_processing_request"


def _integer_as_text(value: Any) -> Any:
    # mpid is a string on the wire; older senders used a number. Booleans stay invalid.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Identifier = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
Mpid = Annotated[str, BeforeValidator(_integer_as_text)]


class WireModel(BaseModel):
    """Base of every Firehose model: unknown fields allowed, known fields type-checked strictly."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class Account(WireModel):
    account_id: int | None = None
    # Setting id -> value as typed in mParticle; every value arrives as a string.
    account_settings: dict[str, str] = Field(default_factory=dict)


class Identity(WireModel):
    """A user, device or partner identity: `{type, encoding, value}`."""

    type: str
    encoding: str | None = None
    value: str | None = None


class EventHead(BaseModel):
    """The fields of an event the proxy reads: its type, its id, and what mappings match on
    (custom_event name, screen_view screen_name, product/promotion action). The proxy keeps the
    decoded body, so the other fields are not copied into the validated value."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)
    type: str
    id: Identifier | None = None
    name: str | None = None
    screen_name: str | None = None
    action: str | None = None


class Event(EventHead):
    """One event of an event_processing_request; type-specific fields beyond these stay as extras."""

    model_config = WireModel.model_config
    timestamp_ms: int | None = None
    source_id: str | None = None
    session_id: int | None = None
    custom_event_type: str | None = None
    attributes: dict[str, Any] | None = None
    custom_flags: dict[str, Any] | None = None
    products: list[dict[str, Any]] | None = None
    promotions: list[dict[str, Any]] | None = None


class FirehoseRequest(WireModel):
    """The envelope every request carries."""

    type: str
    id: Identifier
    timestamp_ms: int | None = None
    firehose_version: str | None = None


class AuthenticatedRequest(FirehoseRequest):
    account: Account | None = None


class ModuleRegistrationRequest(FirehoseRequest):
    pass


class EventProcessingEnvelope(AuthenticatedRequest):
    """What the proxy validates of an event_processing_request (about half the cost of full
    validation, measured): the envelope and each event's head. The worker validates the rest."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)
    events: list[EventHead] = Field(default_factory=list)


class EventProcessingRequest(AuthenticatedRequest):
    source_id: str | None = None
    mpid: Mpid | None = None
    user_identities: list[Identity] = Field(default_factory=list)
    partner_identities: list[Identity] = Field(default_factory=list)
    user_attributes: dict[str, Any] = Field(default_factory=dict)
    user_attribute_lists: dict[str, list[Any]] | None = None
    runtime_environment: dict[str, Any] | None = None
    source_channel: str | None = None
    device_application_stamp: str | None = None
    integration_attributes: dict[str, Any] | None = None
    consent_state: dict[str, Any] | None = None
    system_notifications: list[dict[str, Any]] | None = None
    platform_fields: dict[str, Any] | None = None
    events: list[Event] = Field(default_factory=list)


class AudienceSubscriptionRequest(AuthenticatedRequest):
    audience_id: int
    audience_name: str | None = None
    audience_description: str | None = None
    audience_subscription_settings: dict[str, Any] | None = None
    previous_audience_subscription_settings: dict[str, Any] | None = None
    # `add`, `update` or `remove`; other values are tolerated and ignored.
    action: str


class AudienceUserAttribute(WireModel):
    key: str | None = None
    value: str | None = None
    list_value: list[str] | None = None
    action: str | None = None


class AudienceMembership(WireModel):
    audience_id: int
    audience_name: str | None = None
    audience_subscription_settings: dict[str, Any] | None = None
    # `add`, `delete` or `attribute_update`; other values are tolerated and ignored.
    action: str
    user_attributes: list[AudienceUserAttribute] | None = None


class UserProfile(WireModel):
    mpid: Mpid | None = None
    user_identities: list[Identity] = Field(default_factory=list)
    device_identities: list[Identity] = Field(default_factory=list)
    partner_identities: list[Identity] = Field(default_factory=list)
    audiences: list[AudienceMembership] = Field(default_factory=list)


class AudienceMembershipChangeRequest(AuthenticatedRequest):
    user_profiles: list[UserProfile] = Field(default_factory=list)


class SubjectIdentity(WireModel):
    encoding: str | None = None
    value: str | None = None


class DsrProcessingRequest(AuthenticatedRequest):
    subject_request_id: str | None = None
    subject_request_type: str | None = None
    # Seen both as an ISO 8601 string and as epoch seconds with a fraction.
    submitted_time: str | float | None = None
    subject_identities: dict[str, SubjectIdentity] = Field(default_factory=dict)
    api_version: str | None = None
    regulation: str | None = None


REQUEST_MODELS: dict[MessageType, type[FirehoseRequest]] = {
    MessageType.MODULE_REGISTRATION: ModuleRegistrationRequest,
    MessageType.EVENT_PROCESSING: EventProcessingRequest,
    MessageType.AUDIENCE_SUBSCRIPTION: AudienceSubscriptionRequest,
    MessageType.AUDIENCE_MEMBERSHIP_CHANGE: AudienceMembershipChangeRequest,
    MessageType.DSR_PROCESSING: DsrProcessingRequest,
}


# What the proxy validates before it answers: the envelope of an event request, else the whole.
ENVELOPE_MODELS: dict[MessageType, type[FirehoseRequest]] = {
    **REQUEST_MODELS,
    MessageType.EVENT_PROCESSING: EventProcessingEnvelope,
}


def parse_request(message_type: MessageType, payload: dict[str, Any]) -> FirehoseRequest:
    """Validate a decoded message of a known type whole (the worker, the OpenAPI document); raises
    pydantic.ValidationError when malformed."""
    return REQUEST_MODELS[message_type].model_validate(payload)


def parse_envelope(message_type: MessageType, payload: dict[str, Any]) -> FirehoseRequest:
    """Validate what the proxy reads of a decoded message (ENVELOPE_MODELS); raises
    pydantic.ValidationError when that is malformed."""
    return ENVELOPE_MODELS[message_type].model_validate(payload)


def describe_validation_error(error: ValidationError, *, limit: int = 3) -> str:
    """A short, input-free description of what is wrong (the input may hold a secret)."""
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or '(message)'}: {item['msg']}"
        for item in error.errors(include_input=False, include_url=False)[:limit]
    ]
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def is_verification(request: FirehoseRequest) -> bool:
    """mParticle's connection checks: an event request without events, a membership change
    without user profiles. They are answered normally and carry no work."""
    if isinstance(request, EventProcessingRequest | EventProcessingEnvelope):
        return not request.events
    if isinstance(request, AudienceMembershipChangeRequest):
        return not request.user_profiles
    return False
