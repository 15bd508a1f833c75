"""`loyalty-bridge run` (and `make run`): everything on one machine, under one supervisor.

Embedded PostgreSQL/Redis under `./var` when DATABASE_URL/REDIS_URL are unset, an admin key kept in
`./var/admin_api_key` when ADMIN_API_KEY is unset, migrations, then the proxy and the worker as
child processes. If either child dies, everything is stopped and the command exits 1: a dev
runner should fail loudly (the worker already rides out database and Redis outages by itself, so
an exit is a real fault that a silent restart loop would hide). Ctrl-C or SIGTERM stops the
children (SIGTERM, SIGKILL after a bounded wait), then the embedded servers, and exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
from pydantic import SecretStr

from shared.dev.embedded import EmbeddedServices
from shared.dev.processes import die_with_parent
from shared.migrate import upgrade_to_head
from shared.settings import Settings, normalize_database_url

VAR_DIR_NAME = "var"
ADMIN_KEY_FILE_NAME = "admin_api_key"
SECRET_KEY_FILE_NAME = "secret_key"
# A dev runner talks to local fake S2S servers; production names its own (shared/outbound/hosts.py).
LOCAL_OUTBOUND_ALLOWED_HOSTS = "127.0.0.1,localhost"
# The worker lets running jobs finish for up to 20 s after SIGTERM; leave it that and a margin.
CHILD_STOP_TIMEOUT_SECONDS = 25.0
PROXY_READY_TIMEOUT_SECONDS = 60.0
POLL_INTERVAL_SECONDS = 0.2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]


class _StopRequest:
    """Records SIGINT/SIGTERM/SIGHUP instead of raising, so every step can finish or clean up in order."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {number: signal.signal(number, self._handle) for number in STOP_SIGNALS}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        self.signal_number = signal_number


def run_everything(settings: Settings, var_dir: Path | None = None) -> None:
    """Run embedded services (when needed), migrate, then supervise the proxy and the worker."""
    var_dir = (var_dir or Path.cwd() / VAR_DIR_NAME).resolve()
    stop = _StopRequest()
    services: EmbeddedServices | None = None
    children: list[_Child] = []
    failure: str | None = None
    with stop.installed():
        try:
            var_dir.mkdir(parents=True, exist_ok=True)
            if not settings.database_url or not settings.redis_url:
                services = EmbeddedServices(
                    var_dir, with_postgres=not settings.database_url, with_redis=not settings.redis_url
                )
                services.start()
            child_settings = _resolved_settings(settings, services, var_dir)
            if stop.requested:
                return
            upgrade_to_head(child_settings.require_database_url(), child_settings.secret_key)
            if stop.requested:
                return
            environment = child_environment(child_settings)
            children = [_start_child(name, environment) for name in ("proxy", "worker")]
            failure = _wait_until_ready(child_settings, children, stop)
            if failure is None and not stop.requested:
                _print_banner(settings, child_settings, services, var_dir)
                failure = _supervise(children, stop)
        finally:
            _stop_children(children)
            if services is not None:
                services.stop()
    if failure is not None:
        print(f"loyalty-bridge run: {failure}; everything was stopped", file=sys.stderr, flush=True)
        raise SystemExit(1)
    print("loyalty-bridge run: stopped", flush=True)


def load_or_create_admin_key(var_dir: Path) -> str:
    """The admin key stored in `<var_dir>/admin_api_key` (mode 0600), generated on first use."""
    return load_or_create_key(var_dir / ADMIN_KEY_FILE_NAME)


def load_or_create_key(path: Path) -> str:
    """A random key stored in `path` (mode 0600), generated on first use (43 characters)."""
    with contextlib.suppress(FileNotFoundError):
        key = path.read_text().strip()
        if key:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return key
    key = secrets.token_urlsafe(32)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    return key


def child_environment(settings: Settings) -> dict[str, str]:
    """This process's environment with every setting written out under its contract name."""
    fields = {name.upper() for name in Settings.model_fields}
    environment = {key: value for key, value in os.environ.items() if key.upper() not in fields}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        environment[name.upper()] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return environment


def _resolved_settings(settings: Settings, services: EmbeddedServices | None, var_dir: Path) -> Settings:
    database_url = settings.database_url
    redis_url = settings.redis_url
    if services is not None:
        database_url = database_url or normalize_database_url(services.database_url)
        redis_url = redis_url or services.redis_url
    admin_key = settings.admin_api_key or SecretStr(load_or_create_admin_key(var_dir))
    secret_key = settings.secret_key or SecretStr(load_or_create_key(var_dir / SECRET_KEY_FILE_NAME))
    # Human-readable logs for a terminal, unless LOG_FORMAT was given.
    log_format = settings.log_format if "log_format" in settings.model_fields_set else "console"
    return settings.model_copy(
        update={
            "database_url": database_url,
            "redis_url": redis_url,
            "admin_api_key": admin_key,
            "secret_key": secret_key,
            "outbound_allowed_hosts": settings.outbound_allowed_hosts or LOCAL_OUTBOUND_ALLOWED_HOSTS,
            "log_format": log_format,
        }
    )


def _start_child(name: str, environment: dict[str, str]) -> _Child:
    # Its own session: a terminal's Ctrl-C reaches only this supervisor, which stops children in order.
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "shared.cli", name],
        env=environment,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent(signal.SIGTERM),
    )
    return _Child(name, process)


def _exited(children: list[_Child]) -> str | None:
    for child in children:
        code = child.process.poll()
        if code is not None:
            hint = " (is the port free? set PORT)" if child.name == "proxy" else ""
            return f"the {child.name} exited unexpectedly with code {code}{hint}"
    return None


def _wait_until_ready(settings: Settings, children: list[_Child], stop: _StopRequest) -> str | None:
    """Poll the proxy's /readyz (bounded); a failure message, or None once ready or asked to stop."""
    url = f"{_local_base_url(settings)}/readyz"
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per poll is noise
    deadline = time.monotonic() + PROXY_READY_TIMEOUT_SECONDS
    with httpx.Client(timeout=1.0) as http:
        while not stop.requested:
            failure = _exited(children)
            if failure is not None:
                return failure
            with contextlib.suppress(httpx.HTTPError):
                if http.get(url).status_code == 200:
                    return None
            if time.monotonic() > deadline:
                return f"the proxy was not ready at {url} within {PROXY_READY_TIMEOUT_SECONDS:.0f}s"
            time.sleep(POLL_INTERVAL_SECONDS)
    return None


def _supervise(children: list[_Child], stop: _StopRequest) -> str | None:
    while not stop.requested:
        failure = _exited(children)
        if failure is not None:
            return failure
        time.sleep(POLL_INTERVAL_SECONDS)
    return None


def _stop_children(children: list[_Child]) -> None:
    """SIGTERM every child, wait for all within one bounded delay, SIGKILL whatever is left."""
    for child in children:
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_TIMEOUT_SECONDS
    for child in children:
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"loyalty-bridge run: the {child.name} did not stop in time; killing it", file=sys.stderr)
            child.process.kill()
            child.process.wait()


def _local_base_url(settings: Settings) -> str:
    host = settings.host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 (mapping a wildcard bind to loopback, not binding)
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _print_banner(given: Settings, resolved: Settings, services: EmbeddedServices | None, var_dir: Path) -> None:
    admin_key = resolved.require_admin_api_key()
    if given.admin_api_key is None:
        key_line = f"{admin_key}  (stored in {var_dir / ADMIN_KEY_FILE_NAME})"
    else:
        key_line = "from ADMIN_API_KEY"
    lines = [
        "",
        "Loyalty Bridge is running",
        f"  proxy:          {_local_base_url(resolved)}  (Firehose /mparticle/firehose, admin API /api/v1)",
        f"  admin API key:  {key_line}",
        "  secret key:     "
        + (f"stored in {var_dir / SECRET_KEY_FILE_NAME}" if given.secret_key is None else "from SECRET_KEY"),
    ]
    if services is not None and not given.database_url:
        lines.append(f"  PostgreSQL:     embedded, data in {services.postgres_data_dir}")
        lines.append(f"                  DATABASE_URL={services.database_url}")
    else:
        lines.append("  PostgreSQL:     DATABASE_URL from the environment")
    if services is not None and not given.redis_url:
        lines.append(f"  Redis:          embedded, data in {services.redis_data_dir}")
        lines.append(f"                  REDIS_URL={services.redis_url}")
    else:
        lines.append("  Redis:          REDIS_URL from the environment")
    if services is not None:
        lines.append(f"  server logs:    {services.logs_dir}")
    lines += ["Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)
