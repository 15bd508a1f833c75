"""Steps of the browser tests that read better with a name: logging in, filling configuration
lists, running a bulk action after its count page, and keeping a screenshot for docs/console.md."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser.conftest import ConsolePage
from tests.conftest import ADMIN_KEY

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
ATTRIBUTES = "Attributes (name = template)"


async def log_in(console: ConsolePage) -> None:
    await console.open("/console/")
    await expect(console.page).to_have_url(f"{console.base_url}/console/login?next=%2Fconsole%2F")
    await console.page.get_by_label("Admin API key").fill(ADMIN_KEY)
    await console.page.get_by_role("button", name="Log in").click()
    await expect(console.page.get_by_role("heading", name="Tenants")).to_be_visible()


def new_tenant_id() -> str:
    return f"b-{uuid.uuid4().hex[:10]}"


async def add_rows(page: Page, *rows: dict[str, str]) -> None:
    """Add a row per dict to a configuration list and fill it: a value per column label (a select
    gets the option chosen)."""
    first = await page.locator("table.rows tbody tr").count() + 1
    for number, row in enumerate(rows, start=first):
        await page.get_by_role("button", name="Add row").click()
        for label, value in row.items():
            field = page.get_by_label(f"{label}, row {number}")
            if await field.evaluate("element => element.tagName") == "SELECT":
                await field.select_option(value)
            else:
                await field.fill(value)


async def save_rows(page: Page, tab: str, *rows: dict[str, str]) -> None:
    """Open a configuration list's tab, add the rows and save them."""
    await page.get_by_role("link", name=tab).click()
    await add_rows(page, *rows)
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_text("Saved.")).to_be_visible()


async def run_bulk_action(
    console: ConsolePage, link_and_button: tuple[str, str], count_text: str, done_text: str, label: str
) -> None:
    """Follow a bulk action's link, see how many items it will touch (its count page), confirm."""
    link, button = link_and_button
    await console.page.get_by_role("link", name=link).click()
    await expect(console.page.locator("form p").first).to_contain_text(count_text)
    await console.check(label)
    await console.page.get_by_role("button", name=button).click()
    await expect(console.page.get_by_text(done_text)).to_be_visible()


def keep_for_docs(path: Path, name: str) -> None:
    """With UPDATE_CONSOLE_SCREENSHOTS=1, also refresh docs/console/<name>.png (the README's)."""
    if os.environ.get("UPDATE_CONSOLE_SCREENSHOTS") != "1":
        return
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, DOCS_SCREENSHOTS / f"{name}.png")
