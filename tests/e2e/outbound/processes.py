"""Real processes for the outbound crash test: a `python -m shared.cli worker` child and a private
redis-server (never the shared one), both started and killed by the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from shared.settings import Settings
from tests.conftest import OUTBOUND_ALLOWED_HOSTS, SECRET_KEY

STARTUP_TIMEOUT_SECONDS = 20.0
REPOSITORY_ROOT = Path(__file__).resolve().parents[3]


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
            "SECRET_KEY": SECRET_KEY,
            "OUTBOUND_ALLOWED_HOSTS": OUTBOUND_ALLOWED_HOSTS,
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
