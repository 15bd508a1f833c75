"""`loyalty-bridge run` as a real process: embedded servers under ./var, migrate, proxy + worker,
a clean stop on Ctrl-C with no process left behind, and data kept across restarts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
from redis.asyncio import Redis

from shared.settings import normalize_database_url, plain_database_url

START_DEADLINE_SECONDS = 60.0
STOP_DEADLINE_SECONDS = 40.0
CONFIG_VARIABLES = ("DATABASE_URL", "REDIS_URL", "ADMIN_API_KEY", "HOST", "PORT", "QUEUE_NAME")

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A fresh directory outside pytest's tmp tree. As root, the embedded PostgreSQL runs as another
    user who must traverse to its data, and every pytest session that starts resets that tree to 0700."""
    path = Path(tempfile.mkdtemp(prefix="lb-run-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RunProcess:
    """`python -m shared.cli run` in `cwd`, its output in files, with helpers to read its banner."""

    def __init__(self, cwd: Path, environment: dict[str, str], name: str) -> None:
        self.port = free_port()
        base = {key: value for key, value in os.environ.items() if key not in CONFIG_VARIABLES}
        self.stdout_path = cwd / f"{name}.out"
        self.stderr_path = cwd / f"{name}.err"
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "shared.cli", "run"],
                cwd=cwd,
                env={**base, "PORT": str(self.port), "QUEUE_NAME": f"lb-run-{uuid.uuid4().hex[:8]}", **environment},
                stdout=stdout,
                stderr=stderr,
            )
        self.base_url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.stdout_path.read_text()

    def errors(self) -> str:
        return self.stderr_path.read_text()

    def banner_value(self, label: str) -> str:
        match = re.search(rf"{label}\s*[:=]\s*(\S+)", self.output())
        assert match, f"no {label!r} in the output:\n{self.output()}"
        return match.group(1)

    def wait_until_serving(self) -> None:
        """Bounded wait for the banner (printed once /readyz answered 200)."""
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while "Press Ctrl-C to stop." not in self.output():
            assert self.process.poll() is None, f"run exited {self.process.returncode}:\n{self.errors()}"
            assert time.monotonic() < deadline, f"not serving within {START_DEADLINE_SECONDS}s:\n{self.errors()}"
            time.sleep(0.1)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def interrupt_and_wait(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(STOP_DEADLINE_SECONDS)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def command_lines(processes: list[psutil.Process]) -> list[str]:
    lines = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            lines.append(" ".join(process.cmdline()))
    return lines


async def write_marker(database_url: str, redis_url: str, marker: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("CREATE TABLE IF NOT EXISTS run_survival (marker text)")
        await connection.execute("INSERT INTO run_survival VALUES ($1)", marker)
    finally:
        await connection.close()
    redis = Redis.from_url(redis_url)
    try:
        await redis.set("run-survival", marker)
    finally:
        await redis.aclose()


async def read_markers(database_url: str, redis_url: str) -> tuple[list[str], bytes | None]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT marker FROM run_survival")
    finally:
        await connection.close()
    redis = Redis.from_url(redis_url)
    try:
        return [row["marker"] for row in rows], await redis.get("run-survival")
    finally:
        await redis.aclose()


class TestRunWithEmbeddedServers:
    async def test_serves_stops_cleanly_and_keeps_its_data(self, workdir) -> None:
        marker = uuid.uuid4().hex
        first = RunProcess(workdir, {}, "first")
        try:
            await asyncio.to_thread(first.wait_until_serving)
            admin_key = first.banner_value("admin API key")
            async with httpx.AsyncClient(base_url=first.base_url, timeout=10) as http:
                assert (await http.get("/readyz")).status_code == 200
                assert (await http.get("/api/v1/tenants")).status_code == 401
                authorized = await http.get("/api/v1/tenants", headers={"Authorization": f"Bearer {admin_key}"})
                assert authorized.status_code == 200, authorized.text
            assert (workdir / "var" / "admin_api_key").read_text().strip() == admin_key
            assert (workdir / "var" / "admin_api_key").stat().st_mode & 0o777 == 0o600
            await write_marker(first.banner_value("DATABASE_URL"), first.banner_value("REDIS_URL"), marker)

            children = first.descendants()
            commands = command_lines(children)
            assert any("postgres" in line and str(workdir) in line for line in commands), commands
            assert any("redis-server" in line for line in commands), commands
            assert any(line.endswith("shared.cli proxy") for line in commands), commands
            assert any(line.endswith("shared.cli worker") for line in commands), commands

            second = RunProcess(workdir, {}, "second")
            refused_code = await asyncio.to_thread(second.process.wait, 30)
            assert refused_code == 2
            assert "in use by another loyalty-bridge process" in second.errors()
        finally:
            exit_code = await asyncio.to_thread(first.interrupt_and_wait)

        assert exit_code == 0, first.errors()
        assert still_running(children) == []

        again = RunProcess(workdir, {}, "again")
        try:
            await asyncio.to_thread(again.wait_until_serving)
            assert again.banner_value("admin API key") == admin_key
            database_rows, redis_value = await read_markers(
                again.banner_value("DATABASE_URL"), again.banner_value("REDIS_URL")
            )
            assert database_rows == [marker]
            assert redis_value == marker.encode()
        finally:
            assert await asyncio.to_thread(again.interrupt_and_wait) == 0, again.errors()


class TestRunWithGivenServers:
    async def test_uses_the_given_servers_and_starts_nothing_embedded(self, workdir, database_url, settings) -> None:
        run = RunProcess(
            workdir,
            {"DATABASE_URL": database_url, "REDIS_URL": settings.redis_url, "ADMIN_API_KEY": "given-admin-key-123"},
            "given",
        )
        try:
            await asyncio.to_thread(run.wait_until_serving)
            async with httpx.AsyncClient(base_url=run.base_url, timeout=10) as http:
                assert (await http.get("/readyz")).status_code == 200
                response = await http.get("/api/v1/tenants", headers={"Authorization": "Bearer given-admin-key-123"})
                assert response.status_code == 200, response.text
            assert "from ADMIN_API_KEY" in run.output()
            assert "given-admin-key-123" not in run.output()
            names = [process.name() for process in run.descendants()]
            assert not any("postgres" in name or "redis" in name for name in names), names
            assert not (workdir / "var" / "postgres").exists()
            assert not (workdir / "var" / "admin_api_key").exists()
        finally:
            assert await asyncio.to_thread(run.interrupt_and_wait) == 0, run.errors()

        # The run migrated the given database (idempotently: it was already at head).
        connection = await asyncpg.connect(plain_database_url(normalize_database_url(database_url)))
        try:
            assert await connection.fetchval("SELECT count(*) FROM alembic_version") >= 1
        finally:
            await connection.close()


LEFTOVER_SCRIPT = """
import sys, threading, time
from shared.dev.embedded import EmbeddedServices
services = EmbeddedServices(sys.argv[1], redis_appendonly=False)
# Started from a thread, the servers are not tied to this process's death: they outlive a kill -9.
starter = threading.Thread(target=services.start)
starter.start()
starter.join()
print("started", flush=True)
time.sleep(120)
"""


class TestRecoveryAfterACrash:
    def test_stale_pid_files_naming_unrelated_live_processes_do_not_block_a_start(self, workdir) -> None:
        from shared.dev.embedded import POSTGRES_SYSTEM_USER, EmbeddedServices

        services = EmbeddedServices(workdir / "var", redis_appendonly=False)
        services.start()
        services.stop()
        # As after a crash and a reboot: the recorded pids now belong to an unrelated live process of
        # the user PostgreSQL runs as (PostgreSQL itself treats other users' pids as stale).
        postgres_user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
        unrelated = subprocess.Popen(["sleep", "60"], user=postgres_user)
        try:
            (services.postgres_data_dir / "postmaster.pid").write_text(
                f"{unrelated.pid}\n{services.postgres_data_dir}\n"
            )
            (services.redis_data_dir / "redis-server.pid").write_text(f"{unrelated.pid}\n")

            services.start()
            try:
                assert asyncio.run(read_server_version(services.database_url)).startswith("PostgreSQL")
                assert asyncio.run(redis_ping(services.redis_url))
            finally:
                services.stop()
            assert unrelated.poll() is None
        finally:
            unrelated.kill()
            unrelated.wait()

    def test_servers_left_running_by_a_killed_process_are_stopped_and_replaced(self, workdir) -> None:
        from shared.dev.embedded import EmbeddedServices

        var_dir = workdir / "var"
        crashed = subprocess.Popen(
            [sys.executable, "-c", LEFTOVER_SCRIPT, str(var_dir)], stdout=subprocess.PIPE, cwd=workdir
        )
        assert crashed.stdout is not None
        assert crashed.stdout.readline() == b"started\n"
        leftovers = psutil.Process(crashed.pid).children()
        assert {process.name() for process in leftovers} >= {"postgres", "redis-server"}
        crashed.kill()
        crashed.wait()
        assert len(still_running(leftovers)) == len(leftovers)

        services = EmbeddedServices(var_dir, redis_appendonly=False)
        services.start()
        try:
            assert still_running(leftovers) == []
            assert asyncio.run(read_server_version(services.database_url)).startswith("PostgreSQL")
            assert asyncio.run(redis_ping(services.redis_url))
        finally:
            services.stop()


async def read_server_version(database_url: str) -> str:
    connection = await asyncpg.connect(database_url)
    try:
        return str(await connection.fetchval("SELECT version()"))
    finally:
        await connection.close()


async def redis_ping(redis_url: str) -> bool:
    redis = Redis.from_url(redis_url)
    try:
        return bool(await redis.ping())
    finally:
        await redis.aclose()
