"""`loyalty-bridge run` as a real process: embedded servers under ./var, migrate, proxy + worker,
a clean stop on Ctrl-C with no process left behind, and data kept across restarts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
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
    async def test_serves_stops_cleanly_and_keeps_its_data(self, tmp_path) -> None:
        marker = uuid.uuid4().hex
        first = RunProcess(tmp_path, {}, "first")
        try:
            await asyncio.to_thread(first.wait_until_serving)
            admin_key = first.banner_value("admin API key")
            async with httpx.AsyncClient(base_url=first.base_url, timeout=10) as http:
                assert (await http.get("/readyz")).status_code == 200
                assert (await http.get("/api/v1/tenants")).status_code == 401
                authorized = await http.get("/api/v1/tenants", headers={"Authorization": f"Bearer {admin_key}"})
                assert authorized.status_code == 200, authorized.text
            assert (tmp_path / "var" / "admin_api_key").read_text().strip() == admin_key
            assert (tmp_path / "var" / "admin_api_key").stat().st_mode & 0o777 == 0o600
            await write_marker(first.banner_value("DATABASE_URL"), first.banner_value("REDIS_URL"), marker)

            children = first.descendants()
            commands = command_lines(children)
            assert any("postgres" in line and str(tmp_path) in line for line in commands), commands
            assert any("redis-server" in line for line in commands), commands
            assert any(line.endswith("shared.cli proxy") for line in commands), commands
            assert any(line.endswith("shared.cli worker") for line in commands), commands

            second = RunProcess(tmp_path, {}, "second")
            refused_code = await asyncio.to_thread(second.process.wait, 30)
            assert refused_code == 2
            assert "in use by another loyalty-bridge process" in second.errors()
        finally:
            exit_code = await asyncio.to_thread(first.interrupt_and_wait)

        assert exit_code == 0, first.errors()
        assert still_running(children) == []

        again = RunProcess(tmp_path, {}, "again")
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
    async def test_uses_the_given_servers_and_starts_nothing_embedded(self, tmp_path, database_url, settings) -> None:
        run = RunProcess(
            tmp_path,
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
            assert not (tmp_path / "var" / "postgres").exists()
            assert not (tmp_path / "var" / "admin_api_key").exists()
        finally:
            assert await asyncio.to_thread(run.interrupt_and_wait) == 0, run.errors()

        # The run migrated the given database (idempotently: it was already at head).
        connection = await asyncpg.connect(plain_database_url(normalize_database_url(database_url)))
        try:
            assert await connection.fetchval("SELECT count(*) FROM alembic_version") >= 1
        finally:
            await connection.close()
