"""The OpenAPI document tells the truth about errors (proxy/openapi.py), and undeclared methods are
answered 405 with `Allow` and their own error code."""

from __future__ import annotations

import pytest

from proxy.openapi import API_ERROR_STATUSES


async def test_every_rest_route_documents_the_standard_errors_with_the_envelope(client) -> None:
    document = (await client.get("/openapi.json")).json()
    operations = [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if path.startswith("/api/v1/")
    ]

    assert len(operations) >= 30
    for method, path, operation in operations:
        documented = {int(status) for status in operation["responses"] if status[0] in "45"}
        engine_call = method == "POST" and path.endswith(("/customer-updates", "/events", "/marketing-communications"))
        expected = (set(API_ERROR_STATUSES) - {404}) | {403, 429} if engine_call else set(API_ERROR_STATUSES)
        assert expected <= documented, (method, path, sorted(documented))
        for status in documented:
            schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
    envelope = document["components"]["schemas"]["ErrorResponse"]
    assert envelope["required"] == ["error"]


async def test_the_firehose_documents_one_body_shape_per_message_type(client) -> None:
    document = (await client.get("/openapi.json")).json()
    body = document["paths"]["/mparticle/firehose"]["post"]["requestBody"]

    assert body["required"] is True
    variants = body["content"]["application/json"]["schema"]["oneOf"]
    types = {
        document["components"]["schemas"][variant["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["enum"][0]
        for variant in variants
    }
    assert types == {
        "module_registration_request",
        "event_processing_request",
        "audience_subscription_request",
        "audience_membership_change_request",
        "dsr_processing_request",
    }


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/mparticle/firehose", {"POST"}),
        ("PATCH", "/api/v1/tenants", {"GET", "POST"}),
        ("POST", "/api/v1/tenants/t-1/outbound-settings", {"GET", "PUT"}),
        ("GET", "/api/v1/tenants/t-1/outbound/customer-updates", {"POST"}),
    ],
)
async def test_an_undeclared_method_is_405_with_allow(client, admin_headers, method, path, allowed) -> None:
    response = await client.request(method, path, headers=admin_headers)

    assert response.status_code == 405, response.text
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert {part.strip() for part in response.headers["allow"].split(",")} == allowed
