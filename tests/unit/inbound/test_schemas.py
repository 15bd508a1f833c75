"""Firehose wire models: every real sample is accepted, malformed messages are rejected, and our
responses have the shape of mParticle's own samples."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.inbound.responses import acknowledgement, encode_acknowledgement, encode_response, registration_response
from shared.inbound.schemas import (
    AudienceMembershipChangeRequest,
    AudienceSubscriptionRequest,
    DsrProcessingRequest,
    EventProcessingRequest,
    MessageType,
    ModuleRegistrationRequest,
    describe_validation_error,
    is_verification,
    parse_request,
)
from shared.vocabulary import FIREHOSE_EVENT_TYPES

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "firehose"
REQUEST_SAMPLES = {
    "ModuleRegistrationRequest.json": ModuleRegistrationRequest,
    "EventProcessingRequest_android.json": EventProcessingRequest,
    "EventProcessingRequest_ios.json": EventProcessingRequest,
    "AudienceSubscriptionRequest.json": AudienceSubscriptionRequest,
    "AudienceMembershipChangeRequest.json": AudienceMembershipChangeRequest,
    "DsrProcessingRequest.json": DsrProcessingRequest,
}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return data


def test_every_request_sample_is_covered() -> None:
    assert {path.name for path in SAMPLES.glob("*Request*.json")} == set(REQUEST_SAMPLES)


@pytest.mark.parametrize(("name", "model"), REQUEST_SAMPLES.items())
def test_request_samples_are_accepted(name: str, model: type) -> None:
    payload = load(name)
    request = parse_request(MessageType(payload["type"]), payload)
    assert isinstance(request, model)
    assert request.id == payload["id"]


def test_event_sample_fields_are_read() -> None:
    request = parse_request(MessageType.EVENT_PROCESSING, load("EventProcessingRequest_android.json"))
    assert isinstance(request, EventProcessingRequest)
    assert request.mpid == "12345"
    assert request.account is not None and request.account.account_settings["apiKey"] == "sample API Key"
    assert [event.type for event in request.events] == ["custom_event", "product_action"]
    assert request.events[0].name == "customEvent"
    assert request.events[1].action == "add_to_cart"
    assert request.events[1].products == [
        {
            "id": "id",
            "name": "name",
            "brand": "brand",
            "category": "category",
            "variant": "variant",
            "position": 1,
            "price": 10,
            "quantity": 1,
            "total_amount": 10,
        }
    ]
    # Unknown fields are kept, not dropped.
    extra = request.events[0].model_extra
    assert extra is not None and extra["location"] == {"latitude": 47.6062, "longitude": 122.3231, "accuracy": 0.0}


def test_membership_sample_fields_are_read() -> None:
    request = parse_request(MessageType.AUDIENCE_MEMBERSHIP_CHANGE, load("AudienceMembershipChangeRequest.json"))
    assert isinstance(request, AudienceMembershipChangeRequest)
    profile = request.user_profiles[0]
    assert profile.mpid == "12345"
    assert [(a.audience_id, a.action) for a in profile.audiences] == [
        (456, "add"),
        (789, "attribute_update"),
        (654, "delete"),
    ]


def _with(name: str, path: list[Any], value: Any) -> dict[str, Any]:
    payload = copy.deepcopy(load(name))
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return payload


def _without(name: str, key: str) -> dict[str, Any]:
    payload = copy.deepcopy(load(name))
    del payload[key]
    return payload


EVENTS = "EventProcessingRequest_ios.json"
MEMBERSHIP = "AudienceMembershipChangeRequest.json"
SUBSCRIPTION = "AudienceSubscriptionRequest.json"
DSR = "DsrProcessingRequest.json"


@pytest.mark.parametrize(
    "payload",
    [
        # tolerated: unknown fields and enum values, missing optional fields, other JSON spellings
        pytest.param(_with(EVENTS, ["brand_new_field"], {"x": [1]}), id="unknown-top-level-field"),
        pytest.param(_with(EVENTS, ["events", 0, "type"], "brand_new_event_type"), id="unknown-event-type"),
        pytest.param(_with(EVENTS, ["events", 0, "custom_event_type"], "brand_new"), id="unknown-enum-value"),
        pytest.param(_with(EVENTS, ["source_channel"], "brand_new_channel"), id="unknown-channel"),
        pytest.param(_with(EVENTS, ["mpid"], 12345), id="numeric-mpid"),
        pytest.param(_with(EVENTS, ["events"], []), id="empty-events"),
        pytest.param(_without(EVENTS, "events"), id="missing-events"),
        pytest.param(_without(EVENTS, "account"), id="missing-account-is-an-auth-question"),
        pytest.param(_without(EVENTS, "timestamp_ms"), id="missing-timestamp"),
        pytest.param(_without(EVENTS, "firehose_version"), id="missing-version"),
        pytest.param(_with(EVENTS, ["events", 0, "attributes"], {"n": 1, "b": True}), id="non-string-attributes"),
        pytest.param(_with(EVENTS, ["events", 1, "total_amount"], 11.5), id="float-amount"),
        pytest.param(_with(MEMBERSHIP, ["user_profiles"], []), id="membership-verification"),
        pytest.param(_with(MEMBERSHIP, ["user_profiles", 0, "audiences", 0, "action"], "new"), id="new-action"),
        pytest.param(_with(SUBSCRIPTION, ["action"], "remove"), id="subscription-remove"),
        pytest.param(_with(DSR, ["submitted_time"], "2021-11-01T15:00:00Z"), id="dsr-iso-time"),
    ],
)
def test_tolerated(payload: dict[str, Any]) -> None:
    parse_request(MessageType(payload["type"]), payload)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_without(EVENTS, "id"), id="missing-id"),
        pytest.param(_with(EVENTS, ["id"], ""), id="empty-id"),
        pytest.param(_with(EVENTS, ["id"], "x" * 129), id="id-too-long"),
        pytest.param(_with(EVENTS, ["id"], 42), id="numeric-id"),
        pytest.param(_without(EVENTS, "type"), id="missing-type"),
        pytest.param(_with(EVENTS, ["timestamp_ms"], "1714592744066"), id="string-timestamp"),
        pytest.param(_with(EVENTS, ["events"], {"type": "custom_event"}), id="events-not-a-list"),
        pytest.param(_with(EVENTS, ["events", 0], "custom_event"), id="event-not-an-object"),
        pytest.param(_with(EVENTS, ["events", 0, "type"], None), id="event-without-type"),
        pytest.param(_with(EVENTS, ["events", 0, "id"], 7), id="numeric-event-id"),
        pytest.param(_with(EVENTS, ["events", 0, "timestamp_ms"], 1.5), id="float-event-timestamp"),
        pytest.param(_with(EVENTS, ["events", 0, "name"], ["x"]), id="list-event-name"),
        pytest.param(_with(EVENTS, ["events", 0, "attributes"], ["x"]), id="attributes-not-an-object"),
        pytest.param(_with(EVENTS, ["events", 1, "products"], {"id": "x"}), id="products-not-a-list"),
        pytest.param(_with(EVENTS, ["user_identities"], {"customer": "x"}), id="identities-not-a-list"),
        pytest.param(_with(EVENTS, ["user_identities", 0, "value"], 5), id="numeric-identity-value"),
        pytest.param(_with(EVENTS, ["mpid"], True), id="boolean-mpid"),
        pytest.param(_with(EVENTS, ["account"], "secret"), id="account-not-an-object"),
        pytest.param(_with(EVENTS, ["account", "account_settings", "apiKey"], 5), id="non-string-setting"),
        pytest.param(_with(EVENTS, ["user_attributes"], ["x"]), id="user-attributes-not-an-object"),
        pytest.param(_without(SUBSCRIPTION, "audience_id"), id="subscription-without-audience"),
        pytest.param(_with(SUBSCRIPTION, ["audience_id"], "1234"), id="string-audience-id"),
        pytest.param(_without(SUBSCRIPTION, "action"), id="subscription-without-action"),
        pytest.param(_with(MEMBERSHIP, ["user_profiles", 0, "audiences", 0, "audience_id"], None), id="no-audience"),
        pytest.param(_with(MEMBERSHIP, ["user_profiles"], {"mpid": "1"}), id="profiles-not-a-list"),
        pytest.param(_with(DSR, ["subject_identities", "email"], "jane@example.com"), id="dsr-identity-not-object"),
    ],
)
def test_rejected(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_request(MessageType(payload.get("type", MessageType.EVENT_PROCESSING)), payload)


def test_validation_description_names_the_field_without_the_input() -> None:
    payload = _with(EVENTS, ["account", "account_settings", "authenticationToken"], 12345678)
    with pytest.raises(ValidationError) as caught:
        parse_request(MessageType.EVENT_PROCESSING, payload)
    description = describe_validation_error(caught.value)
    assert "account.account_settings.authenticationToken" in description
    assert "12345678" not in description


@pytest.mark.parametrize(
    ("payload", "verification"),
    [
        pytest.param(_with(EVENTS, ["events"], []), True, id="no-events"),
        pytest.param(_without(EVENTS, "events"), True, id="missing-events"),
        pytest.param(load(EVENTS), False, id="events"),
        pytest.param(_with(MEMBERSHIP, ["user_profiles"], []), True, id="no-profiles"),
        pytest.param(load(MEMBERSHIP), False, id="profiles"),
        pytest.param(load(SUBSCRIPTION), False, id="subscription"),
    ],
)
def test_is_verification(payload: dict[str, Any], verification: bool) -> None:
    assert is_verification(parse_request(MessageType(payload["type"]), payload)) is verification


@pytest.mark.parametrize(
    ("request_type", "sample"),
    [
        (MessageType.EVENT_PROCESSING, "EventProcessingResponse.json"),
        (MessageType.AUDIENCE_SUBSCRIPTION, "AudienceSubscriptionResponse.json"),
        (MessageType.AUDIENCE_MEMBERSHIP_CHANGE, "AudienceMembershipChangeResponse.json"),
        (MessageType.DSR_PROCESSING, "DsrProcessingResponse.json"),
    ],
)
def test_acknowledgement_matches_sample_envelope(request_type: MessageType, sample: str) -> None:
    expected = load(sample)
    response = acknowledgement(request_type, "req-7", 1714592745000).model_dump(exclude_none=True)
    assert response == {
        "type": expected["type"],
        "id": "req-7",
        "timestamp_ms": 1714592745000,
        "firehose_version": expected["firehose_version"],
    }


def test_registration_response_shape() -> None:
    response = registration_response("reg-1", 1714592745000).model_dump(exclude_none=True)
    sample = load("ModuleRegistrationResponse.json")
    assert response["type"] == sample["type"]
    assert (response["id"], response["timestamp_ms"], response["firehose_version"]) == (
        "reg-1",
        1714592745000,
        "3.2.0",
    )
    assert response["sdk_version"] == "3.2.0"
    assert response["name"] == "Loyalty Bridge"
    assert len(response["description"]) < 230
    assert set(response) <= set(sample), "every key we send is one mParticle's sample has"

    permissions = response["permissions"]
    assert permissions["allow_access_mpid"] is True
    assert permissions["allow_user_attributes"] is True
    assert {(p["type"], p["encoding"], p["required"]) for p in permissions["user_identities"]} == {
        (kind, "raw", False)
        for kind in ["customer", "email", "other", "mobile_number", "phone_number_2", "phone_number_3"]
        + [f"other{n}" for n in range(2, 11)]
    }

    events = response["event_processing_registration"]
    assert set(events["supported_event_types"]) == FIREHOSE_EVENT_TYPES
    # Any age: each tenant's own max_data_age_hours is applied by the worker.
    assert events["max_data_age_hours"] == -1
    audiences = response["audience_processing_registration"]
    dsr = response["dsr_processing_registration"]
    assert dsr["supported_dsr_types"] == ["erasure", "access", "portability"]
    assert set(dsr) <= set(sample["dsr_processing_registration"])
    for registration in (events, audiences, dsr):
        settings = {setting["id"]: setting for setting in registration["account_settings"]}
        assert settings["loyaltyEnvironment"] | {"name": "", "description": ""} == {
            "type": "text",
            "id": "loyaltyEnvironment",
            "name": "",
            "description": "",
            "visible": True,
            "required": True,
            "confidential": False,
        }
        assert settings["authenticationToken"]["type"] == "text"
        assert settings["authenticationToken"]["required"] is True
        assert settings["authenticationToken"]["confidential"] is True
        assert set(settings) == {"loyaltyEnvironment", "authenticationToken"}


@pytest.mark.parametrize("message_type", [t for t in MessageType if t is not MessageType.MODULE_REGISTRATION])
@pytest.mark.parametrize("request_id", ["req-1", 'quote " and \\ backslash', "ünïcødé ✓", "line\nbreak", "x" * 128])
def test_encoded_acknowledgement_is_the_dumped_model(message_type: MessageType, request_id: str) -> None:
    response = acknowledgement(message_type, request_id, 1714592744066)
    assert json.loads(encode_response(response)) == response.model_dump(exclude_none=True)
    assert (
        encode_response(response)
        == json.dumps(response.model_dump(), separators=(",", ":"), ensure_ascii=False).encode()
        == encode_acknowledgement(message_type, request_id, 1714592744066)
    )


def test_encoded_registration_is_the_dumped_model() -> None:
    response = registration_response("reg-1", 1714592744066)
    assert json.loads(encode_response(response)) == response.model_dump(exclude_none=True)
