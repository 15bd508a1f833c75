"""The responses the endpoint sends: typed acknowledgements and the module registration."""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict

from shared.inbound.schemas import FIREHOSE_VERSION, MessageType
from shared.mapping.inbound import ANY_DATA_AGE_HOURS
from shared.vocabulary import FIREHOSE_EVENT_TYPES, FIREHOSE_IDENTITY_TYPES, DataSubjectRequestType

INTEGRATION_NAME = "Loyalty Bridge"
INTEGRATION_VERSION = "1.0"
INTEGRATION_DESCRIPTION = (
    "Sends mParticle events and audiences to your loyalty program: events become loyalty events, "
    "audiences become customer lists."
)
TENANT_SETTING_ID = "loyaltyEnvironment"
TOKEN_SETTING_ID = "authenticationToken"
# runtime_environment.type values (firehose.md §4.3); declaring all of them accepts every platform.
RUNTIME_ENVIRONMENTS = ("unknown", "android", "ios", "tvos", "mobileweb", "roku", "xbox", "firetv", "alexa", "smarttv")
# The module accepts data of any age: each tenant's max_data_age_hours (inbound settings, 24 by
# default) is applied by the worker, so mParticle must not drop older data before it arrives.
MAX_DATA_AGE_HOURS = ANY_DATA_AGE_HOURS
SUPPORTED_DSR_TYPES = tuple(DataSubjectRequestType)


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FirehoseResponse(ResponseModel):
    """The envelope every response carries; `id` echoes the request's. Each subclass fixes `type`."""

    type: str = ""
    id: str
    timestamp_ms: int
    firehose_version: str = FIREHOSE_VERSION


class EventProcessingResponse(FirehoseResponse):
    type: Literal["event_processing_response"] = "event_processing_response"


class AudienceSubscriptionResponse(FirehoseResponse):
    type: Literal["audience_subscription_response"] = "audience_subscription_response"


class AudienceMembershipChangeResponse(FirehoseResponse):
    type: Literal["audience_membership_change_response"] = "audience_membership_change_response"


class DsrProcessingResponse(FirehoseResponse):
    type: Literal["dsr_processing_response"] = "dsr_processing_response"


class AccountSetting(ResponseModel):
    type: Literal["text"] = "text"
    id: str
    name: str
    description: str
    visible: bool
    required: bool
    confidential: bool


class IdentityPermission(ResponseModel):
    type: str
    encoding: Literal["raw"] = "raw"
    required: bool = False


class Permissions(ResponseModel):
    user_identities: list[IdentityPermission]
    allow_access_mpid: bool
    allow_user_attributes: bool


class EventProcessingRegistration(ResponseModel):
    account_settings: list[AccountSetting]
    supported_event_types: list[str]
    supported_runtime_environments: list[str]
    max_data_age_hours: int


class AudienceProcessingRegistration(ResponseModel):
    account_settings: list[AccountSetting]


class DsrProcessingRegistration(ResponseModel):
    account_settings: list[AccountSetting]
    supported_dsr_types: list[str]


class ModuleRegistrationResponse(FirehoseResponse):
    type: Literal["module_registration_response"] = "module_registration_response"
    sdk_version: str = FIREHOSE_VERSION
    name: str
    description: str
    version: str
    permissions: Permissions
    event_processing_registration: EventProcessingRegistration
    audience_processing_registration: AudienceProcessingRegistration
    dsr_processing_registration: DsrProcessingRegistration


_ACKNOWLEDGEMENTS: dict[MessageType, type[FirehoseResponse]] = {
    MessageType.EVENT_PROCESSING: EventProcessingResponse,
    MessageType.AUDIENCE_SUBSCRIPTION: AudienceSubscriptionResponse,
    MessageType.AUDIENCE_MEMBERSHIP_CHANGE: AudienceMembershipChangeResponse,
    MessageType.DSR_PROCESSING: DsrProcessingResponse,
}


def acknowledgement(message_type: MessageType, request_id: str, now_ms: int) -> FirehoseResponse:
    """The typed response to an accepted (or verification) request, echoing its id."""
    # Built without validation: on the hot path, and the values are ours.
    return _ACKNOWLEDGEMENTS[message_type].model_construct(id=request_id, timestamp_ms=now_ms)


def encode_response(response: FirehoseResponse) -> bytes:
    """The response as JSON (None fields left out)."""
    if type(response) in _ACKNOWLEDGEMENT_PREFIXES:
        return _encoded_acknowledgement(_ACKNOWLEDGEMENT_PREFIXES[type(response)], response.id, response.timestamp_ms)
    return orjson.dumps(response.model_dump(exclude_none=True))


def encode_acknowledgement(message_type: MessageType, request_id: str, now_ms: int) -> bytes:
    """`encode_response(acknowledgement(…))` without building the model (one per accepted request):
    assembled from pre-encoded parts, the same bytes."""
    return _encoded_acknowledgement(_ACKNOWLEDGEMENT_PREFIXES[_ACKNOWLEDGEMENTS[message_type]], request_id, now_ms)


def _encoded_acknowledgement(prefix: bytes, request_id: str, now_ms: int) -> bytes:
    return b"".join((prefix, orjson.dumps(request_id), b',"timestamp_ms":', str(now_ms).encode(), _ACKNOWLEDGEMENT_END))


# Acknowledgement class -> its JSON up to the id's value: `{"type":"…","id":`.
_ACKNOWLEDGEMENT_PREFIXES: dict[type[FirehoseResponse], bytes] = {
    model: b'{"type":' + orjson.dumps(model.model_fields["type"].default) + b',"id":'
    for model in _ACKNOWLEDGEMENTS.values()
}
_ACKNOWLEDGEMENT_END = b',"firehose_version":' + orjson.dumps(FIREHOSE_VERSION) + b"}"


# The two account settings, visible and required: (id, name, description, confidential).
_ACCOUNT_SETTINGS = (
    (
        TENANT_SETTING_ID,
        "Loyalty Environment",
        "Your loyalty environment (tenant id), as shown in the bridge's admin API",
        False,
    ),
    (
        TOKEN_SETTING_ID,
        "Loyalty Authentication Token",
        "The authentication token shown in the inbound settings of your loyalty environment",
        True,
    ),
)


def _account_settings() -> list[AccountSetting]:
    return [
        AccountSetting(
            id=setting_id, name=name, description=description, visible=True, required=True, confidential=confidential
        )
        for setting_id, name, description, confidential in _ACCOUNT_SETTINGS
    ]


def registration_response(request_id: str, now_ms: int) -> ModuleRegistrationResponse:
    """The module registration: raw user identities, mpid, user attributes, every event type,
    audiences, data subject requests, and the two account settings that name the tenant and carry
    its token."""
    identity_types = sorted(FIREHOSE_IDENTITY_TYPES - {"mpid"})
    return ModuleRegistrationResponse(
        id=request_id,
        timestamp_ms=now_ms,
        name=INTEGRATION_NAME,
        description=INTEGRATION_DESCRIPTION,
        version=INTEGRATION_VERSION,
        permissions=Permissions(
            user_identities=[IdentityPermission(type=identity_type) for identity_type in identity_types],
            allow_access_mpid=True,
            allow_user_attributes=True,
        ),
        event_processing_registration=EventProcessingRegistration(
            account_settings=_account_settings(),
            supported_event_types=sorted(FIREHOSE_EVENT_TYPES),
            supported_runtime_environments=list(RUNTIME_ENVIRONMENTS),
            max_data_age_hours=MAX_DATA_AGE_HOURS,
        ),
        audience_processing_registration=AudienceProcessingRegistration(account_settings=_account_settings()),
        dsr_processing_registration=DsrProcessingRegistration(
            account_settings=_account_settings(), supported_dsr_types=list(SUPPORTED_DSR_TYPES)
        ),
    )
