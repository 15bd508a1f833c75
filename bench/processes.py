"""Child processes of the bench: start, wait ready, measure peak memory, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_cli(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m shared.cli <command>` in its own process group, output to a log file."""
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "shared.cli", command],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_module(module: str, args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_http_ok(url: str, timeout_seconds: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait for `url` to answer 200; fails at once if `process` (the server) exits meanwhile."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server of {url} exited with {process.returncode} (see its log under var/bench)")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_seconds:.0f}s")


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a live process, in MiB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stop(process: subprocess.Popen[bytes], timeout_seconds: float = 15.0) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
