"""The Firehose route is served ahead of the app's router (proxy/firehose/routes.py,
FirehoseFastPath) yet stays an ordinary, documented route of the app."""

from __future__ import annotations


async def test_the_firehose_route_is_documented_with_its_answers(client) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/mparticle/firehose"]
    assert set(operation) == {"post"}
    assert {"200", "400", "401", "413", "503"} <= set(operation["post"]["responses"])
    assert "mparticle" in operation["post"]["tags"]


async def test_other_methods_reach_the_router_and_get_405_in_the_error_envelope(client) -> None:
    response = await client.get("/mparticle/firehose")
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert set(response.json()["error"]) == {"code", "message"}


async def test_a_trailing_slash_is_not_the_firehose_route(client) -> None:
    # Served by the Firehose code, `{}` would be a 400 INVALID_MESSAGE.
    response = await client.post("/mparticle/firehose/", content=b"{}")
    assert response.status_code in (307, 404)


async def test_rejections_use_the_apps_error_envelope(client) -> None:
    response = await client.post("/mparticle/firehose", content=b"{not json")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": {"code": "MALFORMED_JSON", "message": "the body is not valid JSON"}}
