"""Admin API: a tenant's configuration and its disconnection, over HTTP against PostgreSQL."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from shared.models import Customer, OutboundMessage, OutboundSettings, Tenant
from shared.secret_box import secret_box_for
from shared.tenants.config import TenantConfigCache
from shared.tenants.repository import DISCONNECT_REASON
from tests.conftest import SECRET_KEY
from tests.integration.admin_helpers import (
    OUTBOUND_BODY,
    assert_error,
    connect_tenant,
    count_tenant_rows,
    create_tenant,
    outbound_message,
)

SECRET = OUTBOUND_BODY["api_secret"]

SYNC_FIELDS = [
    {"loyalty_field": "last_name", "remote_field": "$LastName"},
    {"loyalty_field": "first_name", "remote_field": "$firstname"},
    {"loyalty_field": "tier", "remote_field": "antavo_tier"},
]
EXTERNAL_EVENTS = [
    {
        "loyalty_event": "reward_claim",
        "event_name": "Reward claimed",
        "custom_event_type": "transaction",
        "attributes": {"reward_id": "{reward}", "points": 100, "ratio": 1.5, "vip": True, "note": None},
    },
    {"loyalty_event": "point_add", "event_name": "Points added", "custom_event_type": "other", "attributes": {}},
]
INBOUND_MAPPINGS = [
    {
        "loyalty_event": "purchase",
        "event_type": "product_action",
        "event_name": "purchase",
        "priority": 1000,
        "attributes": {"total": "{event.total_amount}", "label": "order {event.transaction_id}", "fixed": 7},
    },
    {
        "loyalty_event": "opt_in",
        "event_type": "custom_event",
        "event_name": "Sign up",
        "priority": 0,
        "attributes": {"email": "{batch.user_identities.email}"},
    },
    {"loyalty_event": "visit", "event_type": "session_start", "event_name": None, "priority": 5, "attributes": {}},
]


@pytest.fixture
async def tenant_id(client, admin_headers) -> str:
    """A new tenant without any configuration."""
    return str((await create_tenant(client, admin_headers))["id"])


@pytest.fixture
async def connected_tenant_id(client, admin_headers, tenant_id: str) -> str:
    """A new tenant with outbound settings saved over HTTP."""
    await connect_tenant(client, admin_headers, tenant_id)
    return tenant_id


def url(tenant_id: str, resource: str) -> str:
    return f"/api/v1/tenants/{tenant_id}/{resource}"


class TestOutboundSettings:
    async def test_round_trip_reads_back_exactly_as_written_without_the_secret(
        self, client, admin_headers, tenant_id
    ) -> None:
        put = await client.put(url(tenant_id, "outbound-settings"), json=OUTBOUND_BODY, headers=admin_headers)
        get = await client.get(url(tenant_id, "outbound-settings"), headers=admin_headers)

        expected = {key: value for key, value in OUTBOUND_BODY.items() if key != "api_secret"} | {
            "api_secret_set": True,
            "pod": "EU1",  # derived from api_url
        }
        assert put.status_code == 200, put.text
        assert put.json() == expected
        assert get.status_code == 200
        assert get.json() == expected
        assert SECRET not in put.text and SECRET not in get.text

    async def test_api_url_defaults_to_mparticle_s2s(self, client, admin_headers, tenant_id) -> None:
        body = {key: value for key, value in OUTBOUND_BODY.items() if key != "api_url"}
        response = await client.put(url(tenant_id, "outbound-settings"), json=body, headers=admin_headers)
        assert response.status_code == 200
        assert response.json()["api_url"] == "https://s2s.mparticle.com"

    async def test_secret_is_required_on_first_save_then_kept_when_omitted(
        self, client, admin_headers, sessionmaker, tenant_id
    ) -> None:
        without_secret = {key: value for key, value in OUTBOUND_BODY.items() if key != "api_secret"}
        first = await client.put(url(tenant_id, "outbound-settings"), json=without_secret, headers=admin_headers)
        assert_error(first, 422, "VALIDATION_FAILED")
        assert (await client.get(f"/api/v1/tenants/{tenant_id}", headers=admin_headers)).json()["connected"] is False

        await connect_tenant(client, admin_headers, tenant_id)
        update = await client.put(
            url(tenant_id, "outbound-settings"),
            json={**without_secret, "api_key": "rotated-key"},
            headers=admin_headers,
        )
        assert update.status_code == 200
        assert update.json()["api_key"] == "rotated-key"
        assert update.json()["api_secret_set"] is True
        assert await _stored_secret(sessionmaker, tenant_id) == SECRET

        replaced = await client.put(
            url(tenant_id, "outbound-settings"),
            json={**without_secret, "api_secret": "new-secret"},
            headers=admin_headers,
        )
        assert replaced.status_code == 200
        assert "new-secret" not in replaced.text
        assert await _stored_secret(sessionmaker, tenant_id) == "new-secret"

    async def test_the_secret_never_appears_in_any_response(self, client, admin_headers, tenant_id) -> None:
        bodies = [(await connect_tenant(client, admin_headers, tenant_id)).text]
        await client.put(url(tenant_id, "inbound-settings"), json={}, headers=admin_headers)
        for resource in ("outbound-settings", "inbound-settings", "sync-fields", "external-events", "inbound-mappings"):
            bodies.append((await client.get(url(tenant_id, resource), headers=admin_headers)).text)
        bodies.append((await client.get(f"/api/v1/tenants/{tenant_id}", headers=admin_headers)).text)
        bodies.append((await client.get("/api/v1/tenants", params={"limit": 500}, headers=admin_headers)).text)
        bad = await client.put(
            url(tenant_id, "outbound-settings"), json={**OUTBOUND_BODY, "api_url": "nope"}, headers=admin_headers
        )
        bodies.append(bad.text)
        assert bad.status_code == 422
        assert all(SECRET not in body for body in bodies)

    async def test_a_get_response_sent_back_is_accepted(self, client, admin_headers, connected_tenant_id) -> None:
        current = (await client.get(url(connected_tenant_id, "outbound-settings"), headers=admin_headers)).json()
        response = await client.put(
            url(connected_tenant_id, "outbound-settings"), json={**current, "development": False}, headers=admin_headers
        )
        assert response.status_code == 200
        assert response.json() == {**current, "development": False}

    async def test_get_before_any_save_is_404(self, client, admin_headers, tenant_id) -> None:
        assert_error(await client.get(url(tenant_id, "outbound-settings"), headers=admin_headers), 404, "NOT_FOUND")

    @pytest.mark.parametrize(
        "override",
        [
            {"api_url": "ftp://s2s.mparticle.com"},
            {"api_url": "s2s.mparticle.com"},
            {"api_url": "https://"},
            {"api_url": "https://s2s.mparticle.com/?x=1"},
            {"api_url": "https://s2s.mparticle.com:99999"},
            {"api_url": "https://s2s mparticle.com"},
            {"customer_identifier_field": "customer"},
            {"customer_identifier_field": "other2"},
            {"customer_identifier_field": "mpid"},
            {"customer_identifier_field": "CUSTOMER_ID"},
            {"api_key": ""},
            {"api_secret": ""},
            {"development": "yes"},
            {"loyalty_identifier_field": ""},
            {"unknown_setting": 1},
        ],
    )
    async def test_invalid_settings_are_422_and_change_nothing(
        self, client, admin_headers, connected_tenant_id, override
    ) -> None:
        before = (await client.get(url(connected_tenant_id, "outbound-settings"), headers=admin_headers)).json()

        response = await client.put(
            url(connected_tenant_id, "outbound-settings"), json={**OUTBOUND_BODY, **override}, headers=admin_headers
        )

        assert_error(response, 422, "VALIDATION_FAILED")
        after = await client.get(url(connected_tenant_id, "outbound-settings"), headers=admin_headers)
        assert after.json() == before

    @pytest.mark.parametrize("key", ["customer_id", "email", "other", "other_id_2", "other_id_10", "phone_number_3"])
    async def test_every_s2s_identity_key_is_accepted(self, client, admin_headers, tenant_id, key) -> None:
        response = await connect_tenant(client, admin_headers, tenant_id, customer_identifier_field=key)
        assert response.json()["customer_identifier_field"] == key


class TestSecretsStayOutOfLogs:
    async def test_no_secret_or_credential_is_logged(self, client, admin_headers, caplog) -> None:
        caplog.set_level(logging.DEBUG)
        created = await create_tenant(client, admin_headers)
        tenant_id = created["id"]
        await connect_tenant(client, admin_headers, tenant_id)
        rotated_key = await client.post(f"/api/v1/tenants/{tenant_id}/engine-key/rotate", headers=admin_headers)
        rotated_token = await client.post(url(tenant_id, "inbound-settings/token/rotate"), headers=admin_headers)
        shown = await client.get(url(tenant_id, "inbound-settings"), headers=admin_headers)
        await client.delete(url(tenant_id, "connection"), headers=admin_headers)

        assert f"tenant {tenant_id} created" in caplog.text
        for credential in (
            SECRET,
            created["engine_api_key"],
            rotated_key.json()["engine_api_key"],
            rotated_token.json()["authentication_token"],
            shown.json()["authentication_token"],
        ):
            assert credential not in caplog.text

    async def test_database_errors_do_not_echo_statement_parameters(self, app) -> None:
        with pytest.raises(DBAPIError) as caught:
            async with app.state.proxy.engine.connect() as connection:
                await connection.execute(text("SELECT CAST(:secret AS text), 1 / 0"), {"secret": SECRET})
        assert "division by zero" in str(caught.value)
        assert SECRET not in str(caught.value)


class TestInboundSettings:
    @pytest.mark.parametrize(
        ("method", "resource"),
        [("GET", "inbound-settings"), ("PUT", "inbound-settings"), ("POST", "inbound-settings/token/rotate")],
    )
    async def test_not_connected_is_409(self, client, admin_headers, sessionmaker, tenant_id, method, resource) -> None:
        body = {"customer_identifier_field": "email"} if method == "PUT" else None
        response = await client.request(method, url(tenant_id, resource), json=body, headers=admin_headers)

        assert_error(response, 409, "NOT_CONNECTED")
        counts = await count_tenant_rows(sessionmaker, tenant_id)
        assert counts["inbound_settings"] == 0
        assert await _stored_token(sessionmaker, tenant_id) is None

    async def test_first_outbound_save_issues_the_token_shown_with_the_defaults(
        self, client, admin_headers, sessionmaker, tenant_id
    ) -> None:
        await connect_tenant(client, admin_headers, tenant_id)
        token = await _stored_token(sessionmaker, tenant_id)
        assert token

        response = await client.get(url(tenant_id, "inbound-settings"), headers=admin_headers)

        assert response.status_code == 200
        assert response.json() == {
            "customer_identifier_field": "customer",
            "loyalty_identifier_field": "id",
            "track_audience_data": False,
            "auto_subscribe": False,
            "max_data_age_hours": 24,
            "authentication_token": token,
        }
        await connect_tenant(client, admin_headers, tenant_id, development=False)
        assert await _stored_token(sessionmaker, tenant_id) == token

    async def test_round_trip_reads_back_exactly_as_written(self, client, admin_headers, connected_tenant_id) -> None:
        body = {
            "customer_identifier_field": "other10",
            "loyalty_identifier_field": "loyalty_card",
            "track_audience_data": True,
            "auto_subscribe": True,
            "max_data_age_hours": 87600,
        }
        put = await client.put(url(connected_tenant_id, "inbound-settings"), json=body, headers=admin_headers)
        get = await client.get(url(connected_tenant_id, "inbound-settings"), headers=admin_headers)

        assert put.status_code == 200, put.text
        assert {key: put.json()[key] for key in body} == body
        assert get.json() == put.json()
        assert get.json()["authentication_token"]

        second = {**body, "auto_subscribe": False, "customer_identifier_field": "mpid", "max_data_age_hours": -1}
        again = await client.put(url(connected_tenant_id, "inbound-settings"), json=second, headers=admin_headers)
        assert {key: again.json()[key] for key in body} == second

    @pytest.mark.parametrize(
        "body",
        [
            {"customer_identifier_field": "customer_id"},
            {"customer_identifier_field": "other_id_2"},
            {"customer_identifier_field": "other1"},
            {"customer_identifier_field": "other11"},
            {"customer_identifier_field": "Email"},
            {"loyalty_identifier_field": ""},
            {"track_audience_data": "true"},
            {"auto_subscribe": 1},
            {"max_data_age_hours": 0},
            {"max_data_age_hours": -2},
            {"max_data_age_hours": 87601},
            {"max_data_age_hours": "24"},
            {"max_data_age_hours": 1.5},
            {"surprise": True},
        ],
    )
    async def test_invalid_settings_are_422(self, client, admin_headers, connected_tenant_id, body) -> None:
        response = await client.put(url(connected_tenant_id, "inbound-settings"), json=body, headers=admin_headers)
        assert_error(response, 422, "VALIDATION_FAILED")
        current = (await client.get(url(connected_tenant_id, "inbound-settings"), headers=admin_headers)).json()
        assert current["customer_identifier_field"] == "customer"

    async def test_token_rotation_replaces_the_token(self, client, admin_headers, sessionmaker, connected_tenant_id):
        old = await _stored_token(sessionmaker, connected_tenant_id)

        response = await client.post(url(connected_tenant_id, "inbound-settings/token/rotate"), headers=admin_headers)

        assert response.status_code == 200
        new = response.json()["authentication_token"]
        assert set(response.json()) == {"authentication_token"}
        assert new and new != old
        assert await _stored_token(sessionmaker, connected_tenant_id) == new
        shown = await client.get(url(connected_tenant_id, "inbound-settings"), headers=admin_headers)
        assert shown.json()["authentication_token"] == new


class TestSyncFields:
    async def test_round_trip_keeps_order_and_case(self, client, admin_headers, tenant_id) -> None:
        put = await client.put(url(tenant_id, "sync-fields"), json={"items": SYNC_FIELDS}, headers=admin_headers)
        get = await client.get(url(tenant_id, "sync-fields"), headers=admin_headers)

        assert put.status_code == 200, put.text
        assert put.json() == {"items": SYNC_FIELDS}
        assert get.json() == {"items": SYNC_FIELDS}

    async def test_a_put_replaces_the_whole_list(self, client, admin_headers, tenant_id) -> None:
        await client.put(url(tenant_id, "sync-fields"), json={"items": SYNC_FIELDS}, headers=admin_headers)
        await client.put(url(tenant_id, "sync-fields"), json={"items": SYNC_FIELDS[2:]}, headers=admin_headers)
        assert (await client.get(url(tenant_id, "sync-fields"), headers=admin_headers)).json() == {
            "items": SYNC_FIELDS[2:]
        }
        emptied = await client.put(url(tenant_id, "sync-fields"), json={"items": []}, headers=admin_headers)
        assert emptied.json() == {"items": []}
        assert (await client.get(url(tenant_id, "sync-fields"), headers=admin_headers)).json() == {"items": []}

    @pytest.mark.parametrize(
        "items",
        [
            [{"loyalty_field": "age", "remote_field": "$years"}],
            [{"loyalty_field": "x", "remote_field": "$"}],
            [{"loyalty_field": "x", "remote_field": "$first_name"}],
            [{"loyalty_field": "", "remote_field": "custom"}],
            [{"loyalty_field": "x", "remote_field": ""}],
            [{"loyalty_field": "x", "remote_field": "  "}],
            [{"loyalty_field": "x"}],
            [{"loyalty_field": "a", "remote_field": "same"}, {"loyalty_field": "b", "remote_field": "same"}],
            [{"loyalty_field": "a", "remote_field": "$AGE"}, {"loyalty_field": "b", "remote_field": "$age"}],
        ],
    )
    async def test_invalid_fields_are_422_and_keep_the_stored_list(self, client, admin_headers, tenant_id, items):
        await client.put(url(tenant_id, "sync-fields"), json={"items": SYNC_FIELDS}, headers=admin_headers)

        response = await client.put(url(tenant_id, "sync-fields"), json={"items": items}, headers=admin_headers)

        assert_error(response, 422, "VALIDATION_FAILED")
        assert (await client.get(url(tenant_id, "sync-fields"), headers=admin_headers)).json() == {"items": SYNC_FIELDS}


class TestExternalEvents:
    async def test_round_trip_reads_back_exactly_as_written(self, client, admin_headers, tenant_id) -> None:
        put = await client.put(
            url(tenant_id, "external-events"), json={"items": EXTERNAL_EVENTS}, headers=admin_headers
        )
        get = await client.get(url(tenant_id, "external-events"), headers=admin_headers)

        assert put.status_code == 200, put.text
        assert put.json() == {"items": EXTERNAL_EVENTS}
        assert get.json() == {"items": EXTERNAL_EVENTS}

    @pytest.mark.parametrize(
        "items",
        [
            [{**EXTERNAL_EVENTS[0], "custom_event_type": "purchase"}],
            [{**EXTERNAL_EVENTS[0], "custom_event_type": "Transaction"}],
            [EXTERNAL_EVENTS[0], {**EXTERNAL_EVENTS[1], "loyalty_event": "reward_claim"}],
            [{**EXTERNAL_EVENTS[0], "event_name": ""}],
            [{**EXTERNAL_EVENTS[0], "attributes": {"nested": {"a": 1}}}],
            [{**EXTERNAL_EVENTS[0], "attributes": {"list": [1, 2]}}],
            [{**EXTERNAL_EVENTS[0], "attributes": ["not", "an", "object"]}],
            [{**EXTERNAL_EVENTS[0], "attributes": {"": "empty name"}}],
        ],
    )
    async def test_invalid_events_are_422(self, client, admin_headers, tenant_id, items) -> None:
        response = await client.put(url(tenant_id, "external-events"), json={"items": items}, headers=admin_headers)
        assert_error(response, 422, "VALIDATION_FAILED")
        assert (await client.get(url(tenant_id, "external-events"), headers=admin_headers)).json() == {"items": []}


class TestInboundMappings:
    async def test_round_trip_reads_back_exactly_as_written(self, client, admin_headers, tenant_id) -> None:
        put = await client.put(
            url(tenant_id, "inbound-mappings"), json={"items": INBOUND_MAPPINGS}, headers=admin_headers
        )
        get = await client.get(url(tenant_id, "inbound-mappings"), headers=admin_headers)

        assert put.status_code == 200, put.text
        assert put.json() == {"items": INBOUND_MAPPINGS}
        assert get.json() == {"items": INBOUND_MAPPINGS}

    async def test_optional_fields_take_their_defaults(self, client, admin_headers, tenant_id) -> None:
        items = [{"loyalty_event": "view", "event_type": "screen_view"}]
        response = await client.put(url(tenant_id, "inbound-mappings"), json={"items": items}, headers=admin_headers)
        assert response.json() == {
            "items": [
                {
                    "loyalty_event": "view",
                    "event_type": "screen_view",
                    "event_name": None,
                    "priority": 0,
                    "attributes": {},
                }
            ]
        }

    @pytest.mark.parametrize(
        "item",
        [
            {"loyalty_event": "a", "event_type": "custom_event", "event_name": "x", "priority": -1},
            {"loyalty_event": "a", "event_type": "custom_event", "event_name": "x", "priority": 1001},
            {"loyalty_event": "a", "event_type": "custom_event", "event_name": "x", "priority": 1.5},
            {"loyalty_event": "a", "event_type": "custom_event", "event_name": "x", "priority": "5"},
            {"loyalty_event": "a", "event_type": "custom_event", "event_name": "x", "priority": True},
            {"loyalty_event": "a", "event_type": "custom_event"},
            {"loyalty_event": "a", "event_type": "custom_event", "event_name": None},
            {"loyalty_event": "a", "event_type": "custom_event", "event_name": ""},
            {"loyalty_event": "a", "event_type": "session_start", "event_name": "x"},
            {"loyalty_event": "a", "event_type": "user_attribute_change", "event_name": "x"},
            {"loyalty_event": "a", "event_type": "purchase"},
            {"loyalty_event": "", "event_type": "session_start"},
            {"loyalty_event": "a", "event_type": "session_start", "attributes": {"x": {"y": 1}}},
        ],
    )
    async def test_invalid_mappings_are_422(self, client, admin_headers, tenant_id, item) -> None:
        response = await client.put(url(tenant_id, "inbound-mappings"), json={"items": [item]}, headers=admin_headers)
        assert_error(response, 422, "VALIDATION_FAILED")
        assert (await client.get(url(tenant_id, "inbound-mappings"), headers=admin_headers)).json() == {"items": []}

    @pytest.mark.parametrize(("event_type", "event_name"), [("screen_view", "Home"), ("product_action", "purchase")])
    async def test_event_name_is_optional_where_the_type_has_one(
        self, client, admin_headers, tenant_id, event_type, event_name
    ) -> None:
        items = [
            {"loyalty_event": "a", "event_type": event_type, "event_name": event_name},
            {"loyalty_event": "b", "event_type": event_type},
        ]
        response = await client.put(url(tenant_id, "inbound-mappings"), json={"items": items}, headers=admin_headers)
        assert response.status_code == 200, response.text
        assert [item["event_name"] for item in response.json()["items"]] == [event_name, None]


class TestDisconnect:
    async def test_removes_configuration_revokes_the_token_and_cancels_waiting_messages(
        self, client, admin_headers, sessionmaker, connected_tenant_id
    ) -> None:
        tenant_id = connected_tenant_id
        await _configure_everything(client, admin_headers, tenant_id)
        async with sessionmaker() as session:
            session.add(Customer(tenant_id=tenant_id, id="c-1", status="active", attributes={}))
            for status in ("queued", "retrying", "delivered", "failed", "cancelled"):
                # A message a worker is sending right now holds a lease; a disconnect cancels it too.
                lease = {"lease_expires_at": datetime.now(UTC) + timedelta(minutes=1)} if status == "retrying" else {}
                session.add(
                    outbound_message(tenant_id, status, customer_id=f"was {status}", last_error="HTTP 503", **lease)
                )
            await session.commit()

        response = await client.delete(url(tenant_id, "connection"), headers=admin_headers)

        assert response.status_code == 204
        counts = await count_tenant_rows(sessionmaker, tenant_id)
        for table in ("outbound_settings", "inbound_settings", "sync_field", "external_event", "inbound_mapping"):
            assert counts[table] == 0, table
        assert counts["customer"] == 1
        assert await _stored_token(sessionmaker, tenant_id) is None
        async with sessionmaker() as session:
            messages = (
                await session.scalars(select(OutboundMessage).where(OutboundMessage.tenant_id == tenant_id))
            ).all()
        by_origin = {message.customer_id: message for message in messages}
        assert {origin: (message.status, message.last_error) for origin, message in by_origin.items()} == {
            "was queued": ("cancelled", DISCONNECT_REASON),
            "was retrying": ("cancelled", DISCONNECT_REASON),
            "was delivered": ("delivered", "HTTP 503"),
            "was failed": ("failed", "HTTP 503"),
            "was cancelled": ("cancelled", "HTTP 503"),
        }
        assert by_origin["was queued"].next_attempt_at is None
        assert by_origin["was retrying"].next_attempt_at is None
        assert by_origin["was retrying"].lease_expires_at is None
        assert by_origin["was delivered"].delivered_at is not None

        assert_error(await client.get(url(tenant_id, "outbound-settings"), headers=admin_headers), 404, "NOT_FOUND")
        assert_error(await client.get(url(tenant_id, "inbound-settings"), headers=admin_headers), 409, "NOT_CONNECTED")
        for resource in ("sync-fields", "external-events", "inbound-mappings"):
            assert (await client.get(url(tenant_id, resource), headers=admin_headers)).json() == {"items": []}
        assert (await client.get(f"/api/v1/tenants/{tenant_id}", headers=admin_headers)).json()["connected"] is False

    async def test_is_repeatable_and_reconnecting_issues_a_new_token(
        self, client, admin_headers, sessionmaker, connected_tenant_id
    ) -> None:
        old_token = await _stored_token(sessionmaker, connected_tenant_id)
        assert (await client.delete(url(connected_tenant_id, "connection"), headers=admin_headers)).status_code == 204
        assert (await client.delete(url(connected_tenant_id, "connection"), headers=admin_headers)).status_code == 204

        without_secret = {key: value for key, value in OUTBOUND_BODY.items() if key != "api_secret"}
        refused = await client.put(
            url(connected_tenant_id, "outbound-settings"), json=without_secret, headers=admin_headers
        )
        assert_error(refused, 422, "VALIDATION_FAILED")
        await connect_tenant(client, admin_headers, connected_tenant_id)
        new_token = await _stored_token(sessionmaker, connected_tenant_id)
        assert new_token and new_token != old_token


class TestTenantIsolation:
    async def test_one_tenants_configuration_never_shows_under_another(
        self, client, admin_headers, sessionmaker
    ) -> None:
        tenant_a = (await create_tenant(client, admin_headers))["id"]
        tenant_b = (await create_tenant(client, admin_headers))["id"]
        await connect_tenant(client, admin_headers, tenant_a)
        await _configure_everything(client, admin_headers, tenant_a)
        async with sessionmaker() as session:
            session.add(outbound_message(tenant_a, "queued"))
            await session.commit()
        a_before = await count_tenant_rows(sessionmaker, tenant_a)
        a_token = await _stored_token(sessionmaker, tenant_a)

        for resource in ("sync-fields", "external-events", "inbound-mappings"):
            assert (await client.get(url(tenant_b, resource), headers=admin_headers)).json() == {"items": []}
        assert (await client.get(url(tenant_b, "outbound-settings"), headers=admin_headers)).status_code == 404
        assert (await client.get(url(tenant_b, "inbound-settings"), headers=admin_headers)).status_code == 409

        await connect_tenant(client, admin_headers, tenant_b, api_key="b-key")
        await client.put(url(tenant_b, "sync-fields"), json={"items": SYNC_FIELDS[:1]}, headers=admin_headers)
        await client.post(url(tenant_b, "inbound-settings/token/rotate"), headers=admin_headers)
        await client.delete(url(tenant_b, "connection"), headers=admin_headers)
        await client.delete(f"/api/v1/tenants/{tenant_b}", headers=admin_headers)

        assert await count_tenant_rows(sessionmaker, tenant_a) == a_before
        assert await _stored_token(sessionmaker, tenant_a) == a_token
        assert (await client.get(url(tenant_a, "outbound-settings"), headers=admin_headers)).json()["api_key"] == (
            OUTBOUND_BODY["api_key"]
        )
        assert (await client.get(url(tenant_a, "sync-fields"), headers=admin_headers)).json() == {"items": SYNC_FIELDS}
        async with sessionmaker() as session:
            statuses = (
                await session.scalars(select(OutboundMessage.status).where(OutboundMessage.tenant_id == tenant_a))
            ).all()
        assert statuses == ["queued"]


# Each configuration write, and how its effect shows in a TenantConfig snapshot.
CONFIG_WRITES = [
    ("PUT", "outbound-settings", {**OUTBOUND_BODY, "api_key": "new-key"}, lambda c: c.outbound.api_key == "new-key"),
    ("PUT", "inbound-settings", {"auto_subscribe": True}, lambda c: c.inbound.auto_subscribe is True),
    ("PUT", "inbound-settings", {"max_data_age_hours": 2}, lambda c: c.inbound.max_data_age_hours == 2),
    (
        "PUT",
        "sync-fields",
        {"items": SYNC_FIELDS},
        lambda c: [f.remote_field for f in c.sync_fields] == ["$LastName", "$firstname", "antavo_tier"],
    ),
    (
        "PUT",
        "external-events",
        {"items": EXTERNAL_EVENTS},
        lambda c: [e.loyalty_event for e in c.external_events] == ["reward_claim", "point_add"],
    ),
    (
        "PUT",
        "inbound-mappings",
        {"items": INBOUND_MAPPINGS},
        lambda c: [m.priority for m in c.inbound_mappings] == [1000, 0, 5],
    ),
    ("DELETE", "connection", None, lambda c: not c.connected and c.inbound_token_hash is None),
]


class TestConfigurationReachesProcessCaches:
    @pytest.mark.parametrize(
        ("method", "resource", "body", "visible"), CONFIG_WRITES, ids=[w[1] for w in CONFIG_WRITES]
    )
    async def test_each_write_is_visible_in_a_tenant_config_cache_after_one_refresh(
        self, client, admin_headers, sessionmaker, settings, connected_tenant_id, method, resource, body, visible
    ) -> None:
        await client.put(url(connected_tenant_id, "inbound-settings"), json={}, headers=admin_headers)
        cache = TenantConfigCache(sessionmaker, settings.config_cache_seconds)
        await cache.refresh()
        before = cache.get(connected_tenant_id)
        assert before is not None and before.connected and not visible(before)

        response = await client.request(method, url(connected_tenant_id, resource), json=body, headers=admin_headers)
        assert response.status_code in (200, 204), response.text

        assert await cache.refresh() is True
        after = cache.get(connected_tenant_id)
        assert after is not None and visible(after)
        assert after.config_revision > before.config_revision

    async def test_rotated_token_is_the_one_in_the_cache(
        self, client, admin_headers, sessionmaker, settings, connected_tenant_id
    ) -> None:
        cache = TenantConfigCache(sessionmaker, settings.config_cache_seconds)
        await cache.refresh()
        rotated = await client.post(url(connected_tenant_id, "inbound-settings/token/rotate"), headers=admin_headers)
        assert await cache.refresh() is True
        config = cache.get(connected_tenant_id)
        assert config is not None and config.inbound_token_hash is not None
        box = secret_box_for(SECRET_KEY)
        assert box.token_matches(rotated.json()["authentication_token"], config.inbound_token_hash)


class TestOpenAPI:
    async def test_every_route_is_documented_with_errors_and_examples(self, client) -> None:
        spec = (await client.get("/openapi.json")).json()
        routes = {
            (method.upper(), path): operation
            for path, operations in spec["paths"].items()
            for method, operation in operations.items()
            if path.startswith("/api/v1/tenants") and _is_mine(path)
        }
        assert len(routes) == 17
        for (method, path), operation in routes.items():
            assert operation.get("summary"), (method, path)
            assert "401" in operation["responses"], (method, path)
            success = next(code for code in operation["responses"] if code.startswith("2"))
            if success != "204":
                assert operation["responses"][success]["content"]["application/json"]["schema"], (method, path)
            if method in ("POST", "PUT") and "requestBody" in operation:
                ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
                assert schema.get("examples"), (method, path)


def _is_mine(path: str) -> bool:
    tail = path.removeprefix("/api/v1/tenants").removeprefix("/{tenant_id}")
    return tail in {
        "",
        "/engine-key/rotate",
        "/outbound-settings",
        "/inbound-settings",
        "/inbound-settings/token/rotate",
        "/sync-fields",
        "/external-events",
        "/inbound-mappings",
        "/connection",
    }


async def _configure_everything(client, admin_headers, tenant_id: str) -> None:
    for resource, body in (
        ("inbound-settings", {"customer_identifier_field": "email", "track_audience_data": True}),
        ("sync-fields", {"items": SYNC_FIELDS}),
        ("external-events", {"items": EXTERNAL_EVENTS}),
        ("inbound-mappings", {"items": INBOUND_MAPPINGS}),
    ):
        response = await client.put(url(tenant_id, resource), json=body, headers=admin_headers)
        assert response.status_code == 200, response.text


async def _stored_token(sessionmaker, tenant_id: str) -> Any:
    """The stored inbound token, decrypted (None when there is none)."""
    async with sessionmaker() as session:
        encrypted = await session.scalar(select(Tenant.inbound_token_encrypted).where(Tenant.id == tenant_id))
    return secret_box_for(SECRET_KEY).decrypt(encrypted) if encrypted else None


async def _stored_secret(sessionmaker, tenant_id: str) -> Any:
    """The stored S2S secret, decrypted."""
    async with sessionmaker() as session:
        encrypted = await session.scalar(
            select(OutboundSettings.api_secret_encrypted).where(OutboundSettings.tenant_id == tenant_id)
        )
    return secret_box_for(SECRET_KEY).decrypt(encrypted) if encrypted else None
