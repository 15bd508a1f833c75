"""The operator console in a real browser (Chromium through Playwright): what an operator does with
the spec's pages, without curl. Every page shown is checked for console errors and accessibility
and saved as a screenshot (see conftest.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from playwright.async_api import expect

from shared.models import IncomingError
from tests.browser.conftest import ConsolePage, ConsoleServer
from tests.browser.steps import (
    ATTRIBUTES,
    add_rows,
    keep_for_docs,
    log_in,
    new_tenant_id,
    run_bulk_action,
    save_rows,
)
from tests.conftest import ADMIN_KEY, run_worker_until_idle
from tests.factories import TenantFixture
from tests.fakes.s2s_server import FakeS2SServer
from tests.inbound_helpers import custom_event, dsr_request, event_request


async def test_login_logout_and_a_wrong_key(console: ConsolePage) -> None:
    page = console.page
    await console.open("/console/tenants")
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    keep_for_docs(await console.check("login"), "login")
    await page.get_by_label("Admin API key").fill("not-the-key")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_text("This is not the admin key.")).to_be_visible()
    await expect(page.get_by_label("Admin API key")).to_have_attribute("aria-invalid", "true")
    await console.check("login-refused")
    await page.get_by_label("Admin API key").fill(ADMIN_KEY)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{console.base_url}/console/tenants")
    assert ADMIN_KEY not in await page.content()
    cookies = {cookie["name"]: cookie for cookie in await page.context.cookies()}
    session = cookies["lb_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and ADMIN_KEY not in session["value"]
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    await console.open("/console/tenants")
    await expect(page.get_by_role("heading", name="Log in")).to_be_visible()


async def test_validation_errors_are_shown_next_to_the_fields(console: ConsolePage) -> None:
    page = console.page
    await log_in(console)
    tenant_id = new_tenant_id()
    await page.get_by_label("Id").fill("Not Valid")
    await page.get_by_label("Name").fill("x")
    await page.get_by_role("button", name="Create tenant").click()
    await expect(page.locator("#id-error")).to_contain_text("String should match pattern")
    await page.get_by_label("Id").fill(tenant_id)
    await page.get_by_role("button", name="Create tenant").click()
    await expect(page.get_by_role("heading", name=f"Tenant {tenant_id} created")).to_be_visible()

    await console.open(f"/console/tenants/{tenant_id}/outbound-settings")
    await page.get_by_label("API URL").fill("ftp://nowhere")
    await page.get_by_label("API key").fill("k")
    await page.get_by_role("button", name="Save").first.click()
    await expect(page.locator("#api_url-error")).to_contain_text("must be an http(s) URL")
    await expect(page.get_by_text("api_secret is required")).to_have_count(0)  # schema errors come first
    await console.check("outbound-settings-errors")

    await console.open(f"/console/tenants/{tenant_id}/sync-fields")
    await add_rows(page, {"Loyalty field": "first_name", "Remote field (mParticle)": "$nickname"})
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#items-0-remote_field-error")).to_contain_text("not a reserved mParticle attribute")
    await console.check("sync-fields-errors")

    await console.open(f"/console/tenants/{tenant_id}/inbound-mappings")
    await add_rows(
        page,
        {
            "Loyalty event": "purchase",
            "Event type": "custom_event",
            "Priority (0 to 1000)": "5000",
            "Attributes (name = template)": "no equals sign",
        },
    )
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#items-0-priority-error")).to_contain_text("less than or equal to 1000")
    await expect(page.locator("#items-0-attributes-error")).to_contain_text("line 1")
    await console.check("inbound-mappings-errors")

    await console.open(f"/console/tenants/{tenant_id}/delete")
    delete = page.get_by_role("button", name="Delete tenant")
    await expect(delete).to_be_disabled()
    await page.get_by_label(f"Type {tenant_id} to confirm").fill(tenant_id)
    await expect(delete).to_be_enabled()
    await console.check("tenant-delete")
    await delete.click()
    await expect(page.get_by_text(f"Tenant {tenant_id} was deleted")).to_be_visible()


async def test_an_operator_configures_a_tenant_and_follows_its_traffic(
    console: ConsolePage, console_server: ConsoleServer, fake_s2s: FakeS2SServer, sessionmaker
) -> None:
    page = console.page
    tenant_id = new_tenant_id()
    tenant_path = f"/console/tenants/{tenant_id}"
    s2s_key, s2s_secret = f"key-{uuid.uuid4().hex[:8]}", f"secret-{uuid.uuid4().hex}"
    fake_s2s.add_account(s2s_key, s2s_secret)
    fake_s2s.fail(400, times=None, api_key=s2s_key)  # every delivery is refused: the message fails

    # --- create the tenant: the engine key is shown once ---------------------------------------
    await log_in(console)
    await page.get_by_label("Id").fill(tenant_id)
    await page.get_by_label("Name").fill("ACME loyalty")
    await page.get_by_role("button", name="Create tenant").click()
    engine_key = (await page.locator("#engine-key").inner_text()).strip()
    assert engine_key.startswith("lbk_")
    keep_for_docs(await console.check("tenant-created"), "tenant-created")

    # --- outbound settings (the secret is write-only) ------------------------------------------
    await page.get_by_role("link", name="Next: outbound settings").click()
    await page.get_by_label("API URL").fill(fake_s2s.url)
    await page.get_by_label("API key").fill(s2s_key)
    await page.get_by_label("API secret").fill(s2s_secret)
    await page.get_by_label("Development (send as development data)").check()
    await page.get_by_role("button", name="Save").first.click()
    await expect(page.get_by_text("Saved.")).to_be_visible()
    assert s2s_secret not in await page.content()
    await expect(page.get_by_label("API secret")).to_have_value("")
    keep_for_docs(await console.check("outbound-settings"), "outbound-settings")

    # --- inbound settings: token with copy and rotate -------------------------------------------
    await page.get_by_role("link", name="Inbound settings").click()
    first_token = (await page.locator("#inbound-token").inner_text()).strip()
    await page.get_by_role("button", name="Rotate the token").click()
    await expect(page.get_by_text("A new token was issued")).to_be_visible()
    token = (await page.locator("#inbound-token").inner_text()).strip()
    assert token.startswith("lbt_") and token != first_token
    await page.locator("#inbound-token ~ button").click()
    assert await page.evaluate("navigator.clipboard.readText()") == token
    await page.get_by_label("Customer identifier field (Firehose identity type)").select_option("customer")
    data_age = page.get_by_label("Maximum data age (hours)")
    await expect(data_age).to_have_value("24")
    await data_age.fill("0")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#max_data_age_hours-error")).to_contain_text("must be -1 (any age) or 1 to")
    await expect(data_age).to_have_attribute("aria-invalid", "true")
    await console.check("inbound-settings-data-age-refused")
    await data_age.fill("48")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_text("Saved.")).to_be_visible()
    await expect(data_age).to_have_value("48")
    await expect(page.get_by_label("Customer identifier field (Firehose identity type)")).to_have_value("customer")
    keep_for_docs(await console.check("inbound-settings"), "inbound-settings")

    # --- sync fields ($ reserved names offered), external events, inbound mappings -------------
    await page.get_by_role("link", name="Sync fields").click()
    await add_rows(
        page, {"Loyalty field": "first_name", "Remote field (mParticle)": "$firstname"}, {"Loyalty field": "scratch"}
    )
    await page.get_by_role("button", name="Remove row 2").click()
    await expect(page.get_by_label("Loyalty field, row 2")).to_have_count(0)
    assert await page.locator("#reserved-attributes option").count() == 10
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_text("Saved.")).to_be_visible()
    await expect(page.get_by_label("Remote field (mParticle), row 1")).to_have_value("$firstname")
    keep_for_docs(await console.check("sync-fields"), "sync-fields")

    reward = {"Loyalty event": "reward_claim", "mParticle event name": "Reward claimed"}
    attributes = {"Custom event type": "transaction", ATTRIBUTES: "reward_id = {reward}\nchannel = loyalty"}
    await save_rows(page, "External events", reward | attributes)
    await console.check("external-events")

    purchase = {"Loyalty event": "purchase", "Event type": "custom_event", "Event name": "Purchase"}
    attributes = {"Priority (0 to 1000)": "10", ATTRIBUTES: "total = {amount}\nbonus = 10"}
    await save_rows(page, "Inbound mappings", purchase | attributes)
    saved_attributes = await page.get_by_label(f"{ATTRIBUTES}, row 1").input_value()
    assert sorted(saved_attributes.splitlines()) == ["bonus = 10", "total = {amount}"]
    await expect(page.get_by_role("heading", name="Attribute templates")).to_be_visible()
    keep_for_docs(await console.check("inbound-mappings"), "inbound-mappings")

    # --- a Firehose request for an unknown customer becomes an incoming error; an erasure request --
    async with httpx.AsyncClient(base_url=console_server.base_url) as http:
        tenant = TenantFixture(tenant_id, engine_key, token)
        purchase_event = custom_event("Purchase", {"amount": 42.5}, custom_event_type="transaction")
        firehose = event_request(tenant, purchase_event, customer="nobody-42")  # recent: not EVENT_TOO_OLD
        request_id = firehose["id"]
        erasure = dsr_request(tenant, "erasure", controller_customer_id="nobody-42")
        subject_request_id = erasure["subject_request_id"]
        for body in (firehose, erasure):
            answer = await http.post("/mparticle/firehose", json=body)
            assert answer.status_code == 200, answer.text
        accepted = await http.post(
            f"/api/v1/tenants/{tenant_id}/outbound/events",
            json={
                "customer": {"id": "cust-7", "first_name": "Jane"},
                "action": "reward_claim",
                "data": {"reward": "R-7"},
            },
            headers={"Authorization": f"Bearer {engine_key}"},
        )
        assert accepted.status_code == 202, accepted.text
        message_id = accepted.json()["message_id"]
    await run_worker_until_idle(console_server.settings)  # applies the Firehose work and delivers (400)
    async with sessionmaker() as session:  # entries that cannot be replayed, to see the disabled actions
        for source, payload, message in (
            ("proxy_forwarding", None, "no payload here"),
            ("proxy_request", {"type": "event_processing_request", "id": "r-1"}, "refused by the proxy"),
        ):
            session.add(
                IncomingError(
                    tenant_id=tenant_id,
                    error_code="QUEUE_UNAVAILABLE" if payload is None else "UNAUTHORIZED",
                    message=message,
                    source=source,
                    request_id=None,
                    payload=payload,
                    created_at=datetime.now(UTC),
                )
            )
        await session.commit()

    # --- the incoming error log: filter, sort, expand, copy, download, replay --------------------
    await page.get_by_role("link", name="Incoming error log").click()
    await expect(page.locator("tr.entry")).to_have_count(3)
    await page.get_by_label("Error code").fill("customer_not_found")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("tr.entry")).to_have_count(1)
    assert "error_code=customer_not_found" in page.url  # the view can be shared
    await page.get_by_role("link", name="Request id").click()
    assert "sort=request_id" in page.url and "error_code=customer_not_found" in page.url
    await expect(page.locator("th[aria-sort=ascending]")).to_have_text("Request id ▲")
    await expect(page.locator("tr.entry td.replay")).to_have_text("no")
    await page.get_by_text("Request payload of entry", exact=False).first.click()
    payload = page.locator("pre.payload")
    await expect(payload).to_contain_text('"loyaltyEnvironment"')
    text = await payload.inner_text()
    assert text.startswith('{\n  "type": "event_processing_request"') and token not in text
    keep_for_docs(await console.check("incoming-errors"), "incoming-errors")
    await page.get_by_role("button", name="Copy").click()
    assert await page.evaluate("navigator.clipboard.readText()") == text
    for extension in ("json", "txt"):  # the media types are asserted by the REST route's tests
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name=f"Download .{extension}").click()
        download = await download_info.value
        assert download.suggested_filename.endswith(f".{extension}")
        saved = Path(await download.path()).read_text()
        assert json.loads(saved)["id"] == request_id and saved == text.rstrip("\n") + "\n"
    filtered_url = page.url
    await page.get_by_role("button", name="Replay", exact=True).click()
    await expect(page.get_by_text("Queued for replay", exact=False)).to_be_visible()
    await run_worker_until_idle(console_server.settings)  # applies the replay: the customer is still unknown
    await page.goto(filtered_url)
    await expect(page.locator("tr.entry td.replay")).to_contain_text("failed: CUSTOMER_NOT_FOUND")
    await page.get_by_text("Request payload of entry", exact=False).first.click()
    await expect(page.get_by_text("Last replayed ", exact=False)).to_contain_text("failed: CUSTOMER_NOT_FOUND")
    keep_for_docs(await console.check("incoming-errors-replayed"), "incoming-errors-replayed")
    await run_bulk_action(
        console,
        ("Replay all matching these filters…", "Replay 1 request"),
        "1 logged request can be replayed for these filters (error code customer_not_found)",
        "1 request(s) queued for replay.",
        "replay-all",
    )

    for message, reason in (("refused by the proxy", "the proxy rejected"), ("no payload", "without a payload")):
        await page.get_by_role("link", name="Clear").click()
        await page.get_by_label("Message contains").fill(message)
        await page.get_by_role("button", name="Filter").click()
        await page.get_by_text("Request payload of entry", exact=False).first.click()
        await expect(page.get_by_role("button", name="Replay", exact=True)).to_be_disabled()
        await expect(page.locator(".expanded")).to_contain_text(reason)
    await expect(page.get_by_text("No payload was kept for this entry.")).to_be_visible()
    await expect(page.get_by_role("button", name="Download .json")).to_be_disabled()
    await expect(page.get_by_role("button", name="Copy")).to_be_disabled()
    await console.check("incoming-errors-no-payload")

    # --- outbound messages: pause, a retry waits, resume; retry all (count first), cancel --------
    await page.get_by_role("link", name="Outbound messages").click()
    await page.get_by_role("button", name="Pause delivery").click()
    await expect(page.get_by_text("Delivery paused: calls are still accepted and wait.")).to_be_visible()
    await expect(page.locator("#delivery-state")).to_contain_text("Paused since ")
    await expect(page.locator(".tabs")).to_contain_text("outbound paused")
    await page.get_by_label("Status", exact=True).select_option("failed")
    await page.get_by_label("Last status code").fill("400")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.locator("tbody tr").first).to_contain_text("400")
    keep_for_docs(await console.check("outbound-messages"), "outbound-messages")
    await page.locator("tbody tr a").first.click()
    message_url = page.url
    assert message_id in message_url
    await expect(page.locator("#message-status")).to_have_text("failed")
    timeline = page.locator("ol.timeline li")
    await expect(timeline).to_have_count(1)
    await expect(timeline.first).to_contain_text("HTTP 400")
    await expect(timeline.first).to_contain_text("automatic")
    await page.get_by_role("button", name="Retry").click()
    await expect(page.get_by_text("Put back in the queue.")).to_be_visible()
    await expect(page.locator("#message-status")).to_have_text("queued")
    await run_worker_until_idle(console_server.settings)  # paused: nothing is sent
    await page.goto(message_url)
    await expect(page.locator("#message-status")).to_have_text("queued")
    await expect(timeline).to_have_count(1)
    await page.get_by_role("link", name="All messages").click()
    await page.get_by_role("button", name="Resume delivery").click()
    await expect(page.get_by_text("Delivery resumed", exact=False)).to_be_visible()
    await expect(page.locator("#delivery-state")).to_contain_text("running")
    await run_worker_until_idle(console_server.settings)  # delivered again: 400 again
    await page.goto(message_url)
    await expect(page.locator("#message-status")).to_have_text("failed")
    await expect(timeline).to_have_count(2)
    await expect(timeline.nth(1)).to_contain_text("HTTP 400")
    await expect(timeline.nth(1)).to_contain_text("manual retry")
    attempt_ids = [await item.get_attribute("data-attempt-id") for item in await timeline.all()]
    assert all(attempt_ids) and len(set(attempt_ids)) == 2
    await expect(timeline.nth(1)).to_contain_text(f"attempt #{attempt_ids[1]}")
    keep_for_docs(await console.check("outbound-message"), "outbound-message")

    await page.get_by_role("link", name="All messages").click()
    await page.get_by_label("Kind").select_option("event")
    await page.get_by_label("Last status code").fill("400")
    await page.get_by_role("button", name="Filter").click()
    await run_bulk_action(
        console,
        ("Retry all failed matching this filter…", "Retry 1 message"),
        "1 failed message matches this filter (kind event, last status code 400)",
        "1 failed message(s) put back in the queue.",
        "retry-all",
    )
    await page.goto(message_url)
    await expect(page.locator("#message-status")).to_have_text("queued")
    await page.get_by_role("button", name="Cancel message").click()
    await expect(page.get_by_text("Cancelled.")).to_be_visible()
    await expect(page.locator("#message-status")).to_have_text("cancelled")
    assert message_id in page.url
    await page.get_by_role("link", name="Resend queue").click()
    await expect(page.get_by_text("No messages.")).to_be_visible()
    await console.check("resend-queue")

    # --- records and data subject requests ---------------------------------------------------------
    await page.get_by_role("link", name="Customers").click()
    await expect(page.get_by_text("No customers.")).to_be_visible()
    await console.check("customers")
    await page.get_by_role("link", name="Lists", exact=True).click()
    await console.check("lists")
    await page.get_by_role("link", name="Data subject requests").click()
    requests = page.locator("tbody tr")
    await expect(requests).to_have_count(1)
    for shown in ("erasure", "gdpr", "no_customer", subject_request_id, "mparticle"):
        await expect(requests.first).to_contain_text(shown)
    keep_for_docs(await console.check("data-subject-requests"), "data-subject-requests")

    # --- disconnect (typed confirmation saying what is removed) ---------------------------------
    await page.get_by_role("link", name="Disconnect").click()
    await expect(page.get_by_text("the inbound authentication token")).to_be_visible()
    button = page.get_by_role("button", name="Disconnect")
    await expect(button).to_be_disabled()
    await page.get_by_label(f"Type {tenant_id} to confirm").fill(tenant_id)
    keep_for_docs(await console.check("disconnect"), "disconnect")
    await button.click()
    await expect(page.get_by_text("Disconnected.")).to_be_visible()
    await expect(page.locator(".tabs .badge")).to_have_text("not connected")
    await page.get_by_role("link", name="Sync fields").click()
    await expect(page.get_by_text("No rows.")).to_be_visible()
    await console.open("/console/tenants")
    keep_for_docs(await console.check("tenants"), "tenants")
    async with httpx.AsyncClient(base_url=console_server.base_url) as http:
        refused = await http.post("/mparticle/firehose", json={**firehose, "id": str(uuid.uuid4())})
        assert refused.status_code == 401
    assert tenant_path in page.url or page.url.endswith("/console/tenants")
