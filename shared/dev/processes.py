"""Child processes of the embedded servers: spawning, readiness, stopping, leftovers of a crashed run."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.util
import logging
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

EMBEDDED_EXTRA_HINT = "pip install 'loyalty-bridge[embedded]'"
START_DEADLINE_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
READINESS_POLL_SECONDS = 0.05
PR_SET_PDEATHSIG = 1


class DirectoryLock:
    """An exclusive flock on a file: the kernel releases it when the holder dies, so it is never stale."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RuntimeError(
                f"{self.path.parent} is in use by another loyalty-bridge process (pid {holder}); stop that one "
                "first, or set DATABASE_URL and REDIS_URL to use other servers"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def wheel_path(package: str, *parts: str) -> Path:
    """A file shipped inside an installed wheel, located without importing the package."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0], *parts) if locations else None
    if path is None or not path.exists():
        raise RuntimeError(
            f"the embedded servers need the `embedded` extra ({package} is missing): {EMBEDDED_EXTRA_HINT}, "
            "or set DATABASE_URL and REDIS_URL to use existing servers"
        )
    return path


def die_with_parent(signum: signal.Signals) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to send `signum` to the child when this process dies.

    The signal is tied to the thread that forks, so it is only armed from the main thread.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent_pid = os.getpid()

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(signum))
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signum)

    return arm


def stop_process(process: subprocess.Popen[bytes], first_signal: signal.Signals, timeout_seconds: float) -> None:
    """Send `first_signal`, wait up to `timeout_seconds`, then SIGKILL; always reaps the child."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(first_signal)
    try:
        process.wait(timeout_seconds)
    except subprocess.TimeoutExpired:
        logger.warning("pid %d did not stop within %.0fs; killing it", process.pid, timeout_seconds)
        process.kill()
        process.wait()


def stop_leftover_process(pid: int, name: str, data_dir: Path, first_signal: signal.Signals) -> None:
    """Stop a server left by a crashed run: pid `pid`, named `name`, working in `data_dir`."""
    import psutil

    try:
        process = psutil.Process(pid)
        # Both servers run with their data dir as working directory (Redis rewrites its command line).
        if name not in process.name() or Path(process.cwd()) != data_dir:
            return  # the pid was reused by an unrelated process: the pid file is merely stale
        family = [process, *process.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return
    logger.warning("stopping a %s (pid %d) left running by an earlier run", name, pid)
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(first_signal)
    _, alive = psutil.wait_procs(family, timeout=STOP_TIMEOUT_SECONDS)
    for leftover in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()
    psutil.wait_procs(alive, timeout=5)


def wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], name: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"embedded {name} exited with code {process.returncode} while starting; see {log_path}")
        if time.monotonic() > deadline:
            stop_process(process, signal.SIGTERM, STOP_TIMEOUT_SECONDS)
            raise RuntimeError(f"embedded {name} was not ready within {START_DEADLINE_SECONDS:.0f}s; see {log_path}")
        time.sleep(READINESS_POLL_SECONDS)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def spawn(
    command: Sequence[object],
    log_path: Path,
    cwd: Path,
    death_signal: signal.Signals,
    account: pwd.struct_passwd | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server binary in its own session (a terminal's Ctrl-C reaches only us), logging to a file."""
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 (our own wheel's binaries and arguments)
            [str(part) for part in command],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent(death_signal),
            user=None if account is None else account.pw_uid,
            group=None if account is None else account.pw_gid,
            extra_groups=None if account is None else [],
        )


def allow_traversal(directory: Path) -> None:
    """Let the PostgreSQL system user reach `directory`: add the search bit (x, not r) up to the root."""
    for each in [directory, *directory.parents]:
        mode = each.stat().st_mode
        if mode & 0o011 != 0o011:
            each.chmod(mode | 0o011)
