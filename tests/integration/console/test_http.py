"""The console over HTTP (in-process): login, session cookie, CSRF, security headers, and a form
error coming from the admin API's own schema. The pages themselves are driven in a real browser
by tests/browser/."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from proxy.console.rendering import CONTENT_SECURITY_POLICY
from shared.models import IncomingError
from tests.conftest import ADMIN_KEY
from tests.integration.admin_helpers import OUTBOUND_BODY, new_tenant_id

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def _login(client: httpx.AsyncClient) -> str:
    page = await client.get("/console/login")
    token = _CSRF.search(page.text)
    assert token, page.text
    response = await client.post(
        "/console/login", data={"csrf_token": token.group(1), "admin_key": ADMIN_KEY, "next": "/console/tenants"}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/tenants"
    cookie = response.headers["set-cookie"]
    assert "lb_console=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert ADMIN_KEY not in cookie
    tenants = await client.get("/console/tenants")
    assert tenants.status_code == 200
    found = _CSRF.search(tenants.text)
    assert found
    return found.group(1)


async def test_pages_need_a_session_and_carry_the_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/console/tenants")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/login?next=")
    login = await client.get("/console/login")
    assert login.status_code == 200
    assert login.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert login.headers["x-frame-options"] == "DENY"
    assert "<script>" not in login.text and "style=" not in login.text
    # Not on the API: the headers are the console's own.
    assert "content-security-policy" not in (await client.get("/healthz")).headers


async def test_a_wrong_key_is_refused_next_to_the_field(client: httpx.AsyncClient) -> None:
    page = await client.get("/console/login")
    token = _CSRF.search(page.text)
    assert token
    response = await client.post("/console/login", data={"csrf_token": token.group(1), "admin_key": "nope"})
    assert response.status_code == 200
    assert "This is not the admin key." in response.text
    assert "lb_console=" not in response.headers.get("set-cookie", "").replace("lb_console_login=", "")


@pytest.mark.parametrize("token", [None, "forged"])
async def test_a_post_without_the_session_csrf_token_is_refused(client: httpx.AsyncClient, token: str | None) -> None:
    await _login(client)
    data = {"id": new_tenant_id(), "name": "x"}
    if token:
        data["csrf_token"] = token
    response = await client.post("/console/tenants", data=data)
    assert response.status_code == 403
    assert (
        await client.get(f"/api/v1/tenants/{data['id']}", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    ).status_code == 404


async def test_create_shows_the_schema_errors_and_the_engine_key_once(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    bad = await client.post("/console/tenants", data={"csrf_token": csrf, "id": "Bad Id", "name": " "})
    assert bad.status_code == 200
    assert "String should match pattern" in bad.text and "must not be blank" in bad.text
    tenant_id = new_tenant_id()
    created = await client.post("/console/tenants", data={"csrf_token": csrf, "id": tenant_id, "name": "ACME"})
    assert created.status_code == 201, created.text
    assert "lbk_" in created.text
    again = await client.post("/console/tenants", data={"csrf_token": csrf, "id": tenant_id, "name": "ACME"})
    assert again.status_code == 200 and "already exists" in again.text


async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    response = await client.post("/console/logout", data={"csrf_token": csrf})
    assert response.status_code == 303
    client.cookies.clear()
    assert (await client.get("/console/tenants")).status_code == 303


async def test_the_session_cookie_is_secure_over_https(app) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://console.example") as client:
        page = await client.get("/console/login")
        token = _CSRF.search(page.text)
        assert token and "Secure" in page.headers["set-cookie"]
        response = await client.post("/console/login", data={"csrf_token": token.group(1), "admin_key": ADMIN_KEY})
        assert response.status_code == 303
        assert "Secure" in response.headers["set-cookie"] and "Path=/console" in response.headers["set-cookie"]


# --- what a browser would submit ------------------------------------------------------------------


class _FormFields(HTMLParser):
    """The fields a browser submits for the page's form posting to `action`: inputs with their
    value (checkboxes only when checked), each select's selected option, textareas."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
        self.fields: list[tuple[str, str]] = []
        self._inside = False
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._inside = attributes.get("action") == self.action
        elif not self._inside or "disabled" in attributes:
            return
        elif tag == "input" and attributes.get("name"):
            if attributes.get("type") != "checkbox" or "checked" in attributes:
                self.fields.append((attributes["name"], attributes.get("value", "on")))
        elif tag == "select":
            self._select = attributes.get("name")
        elif tag == "option" and self._select and "selected" in attributes:
            self.fields.append((self._select, attributes.get("value", "")))
        elif tag == "textarea":
            self._textarea = attributes.get("name")
            self.fields.append((self._textarea or "", ""))

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            name, value = self.fields.pop()
            self.fields.append((name, value + data))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def submitted(page: httpx.Response, action: str) -> list[tuple[str, str]]:
    parser = _FormFields(action)
    parser.feed(page.text)
    assert parser.fields, f"no form posting to {action}"
    return parser.fields


async def _api(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    response = await client.request(
        method, f"/api/v1{path}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, **kwargs
    )
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


INBOUND_SETTINGS = {
    "customer_identifier_field": "email",
    "loyalty_identifier_field": "email",
    "track_audience_data": True,
    "auto_subscribe": True,
    "max_data_age_hours": 72,
}


async def test_saving_the_settings_pages_unchanged_keeps_every_setting(client: httpx.AsyncClient) -> None:
    """Both settings forms submitted as shown change nothing: no field the page leaves out (or
    shows write-only, like the secret) is reset by the PUT behind it."""
    csrf = await _login(client)
    tenant_id = new_tenant_id()
    await _api(client, "POST", "/tenants", json={"id": tenant_id, "name": "ACME"})
    await _api(client, "PUT", f"/tenants/{tenant_id}/outbound-settings", json=OUTBOUND_BODY)
    await _api(client, "PUT", f"/tenants/{tenant_id}/inbound-settings", json=INBOUND_SETTINGS)
    before = {
        page: await _api(client, "GET", f"/tenants/{tenant_id}/{page}")
        for page in ("outbound-settings", "inbound-settings")
    }
    assert before["inbound-settings"] | INBOUND_SETTINGS == before["inbound-settings"]

    for page in ("outbound-settings", "inbound-settings"):
        path = f"/console/tenants/{tenant_id}/{page}"
        fields = submitted(await client.get(path), path)
        assert ("csrf_token", csrf) in fields
        saved = await client.post(path, data=dict(fields))
        assert saved.status_code == 303, saved.text
        assert saved.headers["location"] == f"{path}?done=saved"
        assert await _api(client, "GET", f"/tenants/{tenant_id}/{page}") == before[page], page
    assert "Saved." in (await client.get(f"/console/tenants/{tenant_id}/inbound-settings?done=saved")).text


async def test_the_data_age_is_saved_and_a_refused_value_is_shown_next_to_it(client: httpx.AsyncClient) -> None:
    await _login(client)
    tenant_id = new_tenant_id()
    await _api(client, "POST", "/tenants", json={"id": tenant_id, "name": "ACME"})
    await _api(client, "PUT", f"/tenants/{tenant_id}/outbound-settings", json=OUTBOUND_BODY)
    path = f"/console/tenants/{tenant_id}/inbound-settings"
    page = await client.get(path)
    fields = dict(submitted(page, path))
    assert fields["max_data_age_hours"] == "24"  # the default

    refused = await client.post(path, data=fields | {"max_data_age_hours": "0"})
    assert refused.status_code == 200
    error = re.search(r'<ul class="field-errors" id="max_data_age_hours-error"><li>([^<]+)</li>', refused.text)
    assert error and "must be -1 (any age) or 1 to" in error.group(1), refused.text
    assert (await _api(client, "GET", f"/tenants/{tenant_id}/inbound-settings"))["max_data_age_hours"] == 24

    for hours in (-1, 48):
        saved = await client.post(path, data=fields | {"max_data_age_hours": str(hours)})
        assert saved.status_code == 303, saved.text
        assert (await _api(client, "GET", f"/tenants/{tenant_id}/inbound-settings"))["max_data_age_hours"] == hours
        assert dict(submitted(await client.get(path), path))["max_data_age_hours"] == str(hours)


async def test_pause_and_resume_go_through_the_rest_routes(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    tenant_id = new_tenant_id()
    await _api(client, "POST", "/tenants", json={"id": tenant_id, "name": "ACME"})
    messages = f"/console/tenants/{tenant_id}/outbound/messages"
    assert "Pause delivery" in (await client.get(messages)).text

    paused = await client.post(f"/console/tenants/{tenant_id}/outbound/pause", data={"csrf_token": csrf})
    assert paused.status_code == 303 and paused.headers["location"] == f"{messages}?done=paused"
    paused_at = (await _api(client, "GET", f"/tenants/{tenant_id}"))["outbound_paused_at"]
    assert paused_at is not None
    page = await client.get(paused.headers["location"])
    assert "Paused since" in page.text and "Resume delivery" in page.text and "Delivery paused" in page.text
    assert datetime.fromisoformat(paused_at).strftime("%Y-%m-%d %H:%M:%S") in page.text

    resumed = await client.post(f"/console/tenants/{tenant_id}/outbound/resume", data={"csrf_token": csrf})
    assert resumed.status_code == 303
    assert (await _api(client, "GET", f"/tenants/{tenant_id}"))["outbound_paused_at"] is None
    assert "Pause delivery" in (await client.get(messages)).text
    refused = await client.post(f"/console/tenants/{tenant_id}/outbound/pause")  # no CSRF token
    assert refused.status_code == 403
    assert (await _api(client, "GET", f"/tenants/{tenant_id}"))["outbound_paused_at"] is None


@pytest.mark.parametrize(
    ("source", "payload", "refusal", "code"),
    [
        ("proxy_request", {"type": "event_processing_request", "id": "r-1"}, "the proxy rejected", "NOT_REPLAYABLE"),
        ("proxy_forwarding", None, "without a payload", "NO_PAYLOAD"),
    ],
)
async def test_an_entry_that_cannot_be_replayed_says_why(
    client: httpx.AsyncClient, sessionmaker, source: str, payload: Any, refusal: str, code: str
) -> None:
    """The Replay button is disabled with the reason; a replay posted anyway shows the REST
    route's refusal (409) in the expanded row instead of an error page."""
    csrf = await _login(client)
    tenant_id = new_tenant_id()
    await _api(client, "POST", "/tenants", json={"id": tenant_id, "name": "ACME"})
    async with sessionmaker() as session:
        entry = IncomingError(
            tenant_id=tenant_id,
            error_code="UNAUTHORIZED" if payload else "QUEUE_UNAVAILABLE",
            message="cannot be replayed",
            source=source,
            request_id=None,
            payload=payload,
            created_at=datetime.now(UTC),
        )
        session.add(entry)
        await session.commit()
        entry_id = entry.id
    base = f"/console/tenants/{tenant_id}/incoming-errors/{entry_id}"
    detail = await client.get(f"{base}/detail")
    assert re.search(r'<button type="submit" class="secondary" disabled[^>]*>Replay</button>', detail.text)
    assert refusal in detail.text

    answer = await client.post(f"{base}/replay", data={"csrf_token": csrf}, headers={"HX-Request": "true"})
    assert answer.status_code == 200
    assert f"Replay refused ({code})" in answer.text and 'role="alert"' in answer.text
    log = await client.get(f"/console/tenants/{tenant_id}/incoming-errors")
    assert log.text.count('<td class="wrap replay"><span class="muted">no</span></td>') == 1
