"""Browser tests of the operator console: the real proxy (`loyalty-bridge proxy`, uvicorn) on a
free port against this run's database and Redis, driven by Debian's Chromium through Playwright.

Playwright's own browser download is not used (not reachable here): Chromium is launched from
CHROMIUM (default /usr/bin/chromium; `make test` installs it with scripts/ensure-tools.sh). A missing
browser fails the tests instead of skipping them.

Every page a test opens is checked: no browser console errors (CSP violations included), no
serious or critical axe-core violations, and a screenshot in tests/browser/artifacts/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright

from shared.settings import Settings
from tests.conftest import ADMIN_KEY, OUTBOUND_ALLOWED_HOSTS, SECRET_KEY, settings_for_tests
from tests.fakes.s2s_server import FakeS2SServer
from tests.private_redis import free_port

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
AXE_SOURCE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
STARTUP_TIMEOUT_SECONDS = 20.0
BLOCKING_IMPACTS = ("serious", "critical")
AXE_SCRIPT = AXE_SOURCE.read_text() + "\n;undefined"


@dataclass
class ConsoleServer:
    base_url: str
    settings: Settings
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


@pytest.fixture(scope="module")
def browser_settings(database_url: str, service_urls: tuple[str, str], forget_redis_keys_of_this_run: None) -> Settings:
    """Settings of the module's proxy and of the burst workers its tests run (same queue)."""
    return settings_for_tests(database_url, service_urls[1], outbound_retry_base_seconds=0.1, outbound_max_resends=1)


@pytest.fixture(scope="module")
def console_server(browser_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("console") / "proxy.log"
    env = {
        **os.environ,
        "DATABASE_URL": browser_settings.require_database_url(),
        "REDIS_URL": browser_settings.require_redis_url(),
        "QUEUE_NAME": browser_settings.queue_name,
        "ADMIN_API_KEY": ADMIN_KEY,
        "SECRET_KEY": SECRET_KEY,
        "OUTBOUND_ALLOWED_HOSTS": OUTBOUND_ALLOWED_HOSTS,
        "CONFIG_CACHE_SECONDS": str(browser_settings.config_cache_seconds),
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    env.pop("MPARTICLE_CALLER_TOKEN", None)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "proxy"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
    server = ConsoleServer(f"http://127.0.0.1:{port}", browser_settings, process, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        try:
            if httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise AssertionError(f"the proxy did not start:\n{server.output()}")
        time.sleep(0.1)
    yield server
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="module")
def fake_s2s() -> Iterator[FakeS2SServer]:
    server = FakeS2SServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make test` (scripts/ensure-tools.sh chromium) or apt-get install chromium"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        await launched.close()


@dataclass
class ConsolePage:
    """A browser tab on the console that checks every page it is shown."""

    page: Page
    base_url: str
    name: str
    console_errors: list[str] = field(default_factory=list)
    shots: int = 0

    async def open(self, path: str) -> None:
        response = await self.page.goto(self.base_url + path)
        assert response is not None and response.ok, f"{path}: {response.status if response else 'no response'}"

    async def check(self, label: str) -> Path:
        """Accessibility scan (no serious/critical violations) and a full-page screenshot."""
        await self.page.wait_for_load_state("load")
        # Evaluated through the DevTools protocol, which the page's CSP does not govern (an injected
        # <script> would be refused by it, as it should be).
        if not await self.page.evaluate("typeof window.axe !== 'undefined'"):
            await self.page.evaluate(AXE_SCRIPT)
        result: dict[str, Any] = await self.page.evaluate(
            "async () => await axe.run(document, {resultTypes: ['violations']})"
        )
        blocking = [
            {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["html"] for n in v["nodes"][:3]]}
            for v in result["violations"]
            if v["impact"] in BLOCKING_IMPACTS
        ]
        assert not blocking, f"{label}: accessibility violations:\n{json.dumps(blocking, indent=2)}"
        self.shots += 1
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{self.shots:02d}-{label}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
async def console(
    browser: Browser, console_server: ConsoleServer, request: pytest.FixtureRequest
) -> AsyncIterator[ConsolePage]:
    context: BrowserContext = await browser.new_context(
        base_url=console_server.base_url, accept_downloads=True, viewport={"width": 1366, "height": 900}
    )
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console_server.base_url)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    tab = ConsolePage(page, console_server.base_url, request.node.name.removeprefix("test_"))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            tab.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: tab.console_errors.append(f"page error: {error}"))
    try:
        yield tab
    finally:
        await context.close()
    assert not tab.console_errors, "browser console errors:\n" + "\n".join(tab.console_errors)
