"""End-to-end helpers: real processes where the point is a real process (`loyalty-bridge proxy`
and `worker` started like production, killed like a crash), and a private Redis server that a
test may stop and restart (the shared one is never touched)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import create_engine, create_sessionmaker
from shared.settings import Settings
from tests.conftest import ADMIN_KEY, OUTBOUND_ALLOWED_HOSTS, SECRET_KEY
from tests.private_redis import PrivateRedis, free_port
from tests.scratch_database import scratch_database

STARTUP_TIMEOUT_SECONDS = 20.0


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `loyalty-bridge` child process running with this test's settings."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.require_database_url(),
        "REDIS_URL": settings.require_redis_url(),
        "QUEUE_NAME": settings.queue_name,
        "ADMIN_API_KEY": ADMIN_KEY,
        "SECRET_KEY": SECRET_KEY,
        "OUTBOUND_ALLOWED_HOSTS": OUTBOUND_ALLOWED_HOSTS,
        "CONFIG_CACHE_SECONDS": str(settings.config_cache_seconds),
        "LOG_LEVEL": "INFO",
        "METRICS_PORT": "0",  # a free port per worker (a test may name one)
        **extra,
    }
    env.pop("MPARTICLE_CALLER_TOKEN", None)
    return env


@dataclass
class ChildProcess:
    """A `python -m shared.cli <command>` child; its output goes to a log file (read on failure)."""

    command: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    def start(self) -> ChildProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", self.command],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self, timeout: float) -> int:
        """The exit code, waiting at most `timeout` seconds."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.command} still running after {timeout}s:\n{self.output()}")
            await asyncio.sleep(0.05)
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


@pytest.fixture
def spawn(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., ChildProcess]]:
    """`spawn("worker")` starts `python -m shared.cli worker` with this test's settings; every
    child still running at the end of the test is killed."""
    children: list[ChildProcess] = []

    def start(command: str, **env: str) -> ChildProcess:
        child = ChildProcess(command, process_env(settings, **env), tmp_path / f"{command}-{len(children)}.log")
        children.append(child.start())
        return child

    yield start
    for child in children:
        child.kill()


@pytest.fixture
async def own_database_url(service_urls: tuple[str, str]) -> AsyncIterator[str]:
    """A database of one test alone, migrated to head. For tests running a real worker whose
    figures (counters, shutdown time) must not depend on earlier tests: a worker's sweeps cover
    its whole database (the Firehose spool, every tenant's due outbound messages), so in the run's
    shared database it would also take up work earlier tests left. A module opts in with
    `own_database_settings` and `own_database_sessionmaker` as its `settings` / `sessionmaker`."""
    async with scratch_database(service_urls[0], "lb_own") as url:
        yield url


def own_database_settings(settings: Settings, database_url: str) -> Settings:
    """This test's settings on its own database."""
    return settings.model_copy(update={"database_url": database_url})


@asynccontextmanager
async def own_database_sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the database of `settings` (a test's own), for arranging and asserting."""
    engine = create_engine(settings, application_name="tests-own-database", pool_size=2)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@dataclass
class LiveProxy:
    base_url: str
    process: ChildProcess


@pytest.fixture
async def live_proxy(spawn: Callable[..., ChildProcess]) -> AsyncIterator[LiveProxy]:
    """`loyalty-bridge proxy` (uvicorn) on a free port, ready to serve."""
    port = free_port()
    child = spawn("proxy", HOST="127.0.0.1", PORT=str(port))
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    async with httpx.AsyncClient(base_url=base_url) as http:
        while True:
            try:
                if (await http.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or (child.process is not None and child.process.poll() is not None):
                raise AssertionError(f"the proxy did not start:\n{child.output()}")
            await asyncio.sleep(0.1)
    yield LiveProxy(base_url, child)
    child.signal(signal.SIGTERM)
    await child.wait(15)


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = PrivateRedis(directory)
    await server.start()
    yield server
    server.stop()


async def eventually(check: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.05) -> None:
    """Wait until `await check()` is truthy (a bounded wait for another process, not a timing claim)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
