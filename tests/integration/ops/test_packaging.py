"""The built distribution is self-contained: a wheel installed into a fresh virtualenv migrates, serves
and works from an unrelated directory, with the alembic scripts shipped inside the `migrations` package.

Building the wheel and installing it with its dependencies from the registry takes ~30 s, once per run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

import shared.models  # noqa: F401  (registers every table on the metadata)
from shared.db import Base
from shared.settings import plain_database_url
from tests.conftest import SECRET_KEY
from tests.scratch_database import scratch_database

PROJECT_ROOT = Path(__file__).resolve().parents[3]
SOURCES = ("pyproject.toml", "README.md", "shared", "proxy", "worker", "migrations")
CONFIG_VARIABLES = ("DATABASE_URL", "REDIS_URL", "ADMIN_API_KEY", "HOST", "PORT", "QUEUE_NAME", "PYTHONPATH")
SERVE_DEADLINE_SECONDS = 30.0

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (the build writes nothing into the working tree)."""
    build_dir = tmp_path_factory.mktemp("build")
    source = build_dir / "source"
    for name in SOURCES:
        origin = PROJECT_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(origin, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(source), "-w", str(build_dir / "dist")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = (build_dir / "dist").glob("loyalty_bridge-*.whl")
    return built


@pytest.fixture(scope="module")
def installed_bin(wheel, tmp_path_factory) -> Path:
    """The bin/ folder of a fresh virtualenv where only the wheel (and its dependencies) is installed."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=540,
    )
    return venv / "bin"


def clean_environment(**values: str) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if key not in CONFIG_VARIABLES}
    return {**base, **values}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM, then the exit code; None (after a SIGKILL) if it did not stop within 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def wait_for_http_ok(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + SERVE_DEADLINE_SECONDS
    while True:
        assert process.poll() is None, f"exited with {process.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} not 200 within {SERVE_DEADLINE_SECONDS}s"
        time.sleep(0.1)


async def wait_for_worker_heartbeat(process: subprocess.Popen[bytes], redis_url: str, queue_name: str) -> None:
    """Wait until the worker polls its queue: arq writes `<queue>:health-check` once it is up."""
    redis = Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + SERVE_DEADLINE_SECONDS
        while not await redis.exists(f"{queue_name}:health-check"):
            assert process.poll() is None, f"exited with {process.returncode}"
            assert time.monotonic() < deadline, f"no heartbeat within {SERVE_DEADLINE_SECONDS}s"
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()


@pytest.fixture
async def fresh_database(service_urls) -> AsyncIterator[str]:
    """An empty database on the test server (dropped afterwards): the installed CLI migrates it."""
    async with scratch_database(service_urls[0], "lb_pkg", migrate=False) as url:
        yield url


class TestWheel:
    def test_ships_every_migration_and_the_alembic_template(self, wheel) -> None:
        names = set(zipfile.ZipFile(wheel).namelist())
        expected = {f"migrations/versions/{path.name}" for path in (PROJECT_ROOT / "migrations/versions").glob("*.py")}
        assert {"migrations/env.py", "migrations/script.py.mako", "migrations/versions/0001_initial_schema.py"} <= names
        assert expected <= names
        assert not any(name.startswith("tests/") for name in names)


class TestInstalledDistribution:
    async def test_migrate_proxy_and_worker_run_from_an_unrelated_directory(
        self, installed_bin, fresh_database, service_urls, tmp_path
    ) -> None:
        cli = str(installed_bin / "loyalty-bridge")
        located = subprocess.run(
            [
                str(installed_bin / "python"),
                "-c",
                "import migrations, shared; print(shared.__file__, migrations.__file__)",
            ],
            cwd=tmp_path,
            env=clean_environment(),
            capture_output=True,
            text=True,
            check=True,
        )
        assert str(PROJECT_ROOT) not in located.stdout
        assert str(installed_bin.parent) in located.stdout

        migrate = await asyncio.to_thread(
            subprocess.run,
            [cli, "migrate"],
            cwd=tmp_path,
            env=clean_environment(DATABASE_URL=fresh_database, SECRET_KEY=SECRET_KEY),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr
        connection = await asyncpg.connect(plain_database_url(fresh_database))
        try:
            rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        finally:
            await connection.close()
        assert set(Base.metadata.tables) | {"alembic_version"} <= {row["tablename"] for row in rows}

        port = free_port()
        environment = clean_environment(
            DATABASE_URL=fresh_database,
            REDIS_URL=service_urls[1],
            ADMIN_API_KEY="packaging-test-admin-key",
            SECRET_KEY=SECRET_KEY,
            PORT=str(port),
            QUEUE_NAME=f"lb-pkg-{uuid.uuid4().hex[:8]}",
        )
        proxy_log = tmp_path / "proxy.log"
        with proxy_log.open("wb") as log:
            proxy = subprocess.Popen([cli, "proxy"], cwd=tmp_path, env=environment, stderr=log)
        try:
            await asyncio.to_thread(wait_for_http_ok, proxy, f"http://127.0.0.1:{port}/healthz")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                assert (await http.get("/readyz")).status_code == 200
        finally:
            proxy_code = await asyncio.to_thread(stop, proxy)
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (so it may end "killed by it").
        assert proxy_code in (0, -signal.SIGTERM), proxy_log.read_text()
        assert "Application shutdown complete" in proxy_log.read_text()

        worker_log = tmp_path / "worker.log"
        with worker_log.open("wb") as log:
            worker = subprocess.Popen([cli, "worker"], cwd=tmp_path, env=environment, stderr=log)
        try:
            await wait_for_worker_heartbeat(worker, service_urls[1], environment["QUEUE_NAME"])
        finally:
            worker_code = await asyncio.to_thread(stop, worker)
        assert worker_code == 0, worker_log.read_text()
