"""The one classifier of transient PostgreSQL/Redis failures, and the one in-process retry policy."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from redis import exceptions as redis_errors
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from shared.errors import DatabaseUnavailable, ErrorCode, QueueUnavailable
from shared.transient import is_transient_database_error, is_transient_queue_error, retrying


def _raised_from(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


def _handled_during(error: BaseException, context: BaseException) -> BaseException:
    error.__context__ = context
    return error


class _Orig(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        pytest.param(ConnectionRefusedError(111, "refused"), True, id="connection-refused"),
        pytest.param(ConnectionResetError(104, "reset"), True, id="connection-reset"),
        pytest.param(OSError("network unreachable"), True, id="os-error"),
        pytest.param(TimeoutError(), True, id="timeout"),
        pytest.param(PoolTimeoutError("pool exhausted"), True, id="pool-timeout"),
        pytest.param(asyncpg.exceptions.ConnectionDoesNotExistError("closed"), True, id="connection-lost"),
        pytest.param(asyncpg.exceptions.CannotConnectNowError("starting up"), True, id="server-starting"),
        pytest.param(asyncpg.exceptions.AdminShutdownError("shutdown"), True, id="admin-shutdown"),
        pytest.param(asyncpg.exceptions.CrashShutdownError("crash"), True, id="crash-shutdown"),
        pytest.param(asyncpg.exceptions.TooManyConnectionsError("too many"), True, id="too-many-connections"),
        pytest.param(asyncpg.exceptions.DiskFullError("disk full"), True, id="disk-full"),
        pytest.param(asyncpg.exceptions.DeadlockDetectedError("deadlock"), True, id="deadlock"),
        pytest.param(asyncpg.exceptions.SerializationError("serialization"), True, id="serialization"),
        pytest.param(asyncpg.InterfaceError("connection is closed"), True, id="client-connection-closed"),
        pytest.param(
            _raised_from(OperationalError("SELECT 1", {}, _Orig()), asyncpg.exceptions.ConnectionDoesNotExistError()),
            True,
            id="sqlalchemy-wrapping-connection-loss",
        ),
        pytest.param(
            InterfaceError("SELECT 1", {}, _raised_from(_Orig(), asyncpg.InterfaceError("another operation"))),
            True,
            id="sqlalchemy-orig-raised-from-asyncpg",
        ),
        pytest.param(
            DBAPIError("SELECT 1", {}, _Orig(), connection_invalidated=True), True, id="connection-invalidated"
        ),
        pytest.param(ValueError("bug"), False, id="bug"),
        pytest.param(KeyError("type"), False, id="key-error"),
        pytest.param(IntegrityError("INSERT", {}, _Orig()), False, id="integrity-error"),
        pytest.param(OperationalError("SELECT 1", {}, _Orig()), False, id="sqlalchemy-wrapper-alone"),
        pytest.param(asyncpg.exceptions.UntranslatableCharacterError("\\u0000"), False, id="bad-data"),
        pytest.param(asyncpg.exceptions.UndefinedTableError("no table"), False, id="schema-error"),
        pytest.param(asyncpg.exceptions.InvalidCatalogNameError("no database"), False, id="no-such-database"),
        pytest.param(asyncpg.exceptions.ClientConfigurationError("bad sslmode"), False, id="client-configuration"),
        pytest.param(
            _raised_from(OperationalError("SELECT 1", {}, _Orig()), asyncpg.exceptions.ClientConfigurationError("ssl")),
            False,
            id="sqlalchemy-wrapping-client-configuration",
        ),
        pytest.param(
            _handled_during(ValueError("bug"), ConnectionRefusedError()), False, id="bug-while-handling-an-outage"
        ),
        pytest.param(redis_errors.ResponseError("WRONGTYPE"), False, id="a-redis-error-is-not-a-database-one"),
    ],
)
def test_is_transient_database_error(error: BaseException, transient: bool) -> None:
    assert is_transient_database_error(error) is transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        pytest.param(redis_errors.ConnectionError("refused"), True, id="connection-refused"),
        pytest.param(redis_errors.TimeoutError("read timed out"), True, id="read-timeout"),
        pytest.param(redis_errors.BusyLoadingError("loading"), True, id="loading-dataset"),
        pytest.param(redis_errors.MaxConnectionsError("pool"), True, id="pool-exhausted"),
        pytest.param(redis_errors.ReadOnlyError("replica"), True, id="failover-read-only"),
        pytest.param(redis_errors.OutOfMemoryError("OOM"), True, id="out-of-memory"),
        pytest.param(redis_errors.TryAgainError("TRYAGAIN"), True, id="try-again"),
        pytest.param(redis_errors.MasterDownError("MASTERDOWN"), True, id="master-down"),
        pytest.param(ConnectionRefusedError(111, "refused"), True, id="socket-refused"),
        pytest.param(TimeoutError(), True, id="asyncio-timeout"),
        pytest.param(
            _raised_from(RuntimeError("enqueue failed"), redis_errors.ConnectionError()), True, id="raised-from-outage"
        ),
        pytest.param(
            _handled_during(redis_errors.WatchError("lost while watching"), redis_errors.ConnectionError()),
            True,
            id="connection-lost-inside-watch",
        ),
        pytest.param(redis_errors.WatchError("a watched key changed"), False, id="watched-key-changed"),
        pytest.param(redis_errors.ResponseError("WRONGTYPE"), False, id="wrong-type"),
        pytest.param(redis_errors.NoScriptError("NOSCRIPT"), False, id="no-script"),
        pytest.param(redis_errors.AuthenticationError("bad password"), False, id="bad-password"),
        pytest.param(redis_errors.DataError("bad value"), False, id="bad-value"),
        pytest.param(ValueError("bug"), False, id="bug"),
        pytest.param(
            _handled_during(ValueError("bug"), redis_errors.ConnectionError()), False, id="bug-while-handling-an-outage"
        ),
    ],
)
def test_is_transient_queue_error(error: BaseException, transient: bool) -> None:
    assert is_transient_queue_error(error) is transient


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (DatabaseUnavailable("down"), 503, ErrorCode.DATABASE_UNAVAILABLE),
        (QueueUnavailable("down"), 503, ErrorCode.QUEUE_UNAVAILABLE),
    ],
)
def test_unavailable_errors_are_503_with_stable_codes(error: DatabaseUnavailable, status: int, code: ErrorCode) -> None:
    assert (error.http_status, error.code) == (status, code)


async def test_retrying_retries_transient_errors_until_the_call_succeeds() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(len(calls))
        if len(calls) < 3:
            raise ConnectionRefusedError(111, "refused")
        return "done"

    result = None
    async for attempt in retrying("test", retry_on=is_transient_database_error, first_delay_seconds=0.001):
        with attempt:
            result = await flaky()
    assert (result, len(calls)) == ("done", 3)


async def test_retrying_reraises_a_permanent_error_at_once() -> None:
    calls = 0
    with pytest.raises(ValueError, match="bug"):
        async for attempt in retrying("test", retry_on=is_transient_database_error, first_delay_seconds=0.001):
            with attempt:
                calls += 1
                raise ValueError("bug")
    assert calls == 1


async def test_retrying_gives_up_after_its_time_bound_with_the_last_error() -> None:
    calls = 0
    with pytest.raises(ConnectionRefusedError):
        async for attempt in retrying(
            "test", retry_on=is_transient_database_error, first_delay_seconds=0.01, give_up_after_seconds=0.05
        ):
            with attempt:
                calls += 1
                raise ConnectionRefusedError(111, "refused")
    assert calls >= 2


async def test_retrying_stops_waiting_when_the_stop_event_is_set() -> None:
    stop = asyncio.Event()
    calls = 0

    async def stop_soon() -> None:
        await asyncio.sleep(0.05)
        stop.set()

    stopper = asyncio.create_task(stop_soon())
    # A one-hour delay between attempts: only the stop event can end this (the timeout bounds a failure).
    with pytest.raises(ConnectionRefusedError):
        async with asyncio.timeout(30):
            async for attempt in retrying(
                "test",
                retry_on=is_transient_database_error,
                first_delay_seconds=3600,
                max_delay_seconds=3600,
                stop=stop,
            ):
                with attempt:
                    calls += 1
                    raise ConnectionRefusedError(111, "refused")
    await stopper
    assert calls == 2, "the attempt after the interrupted wait is the last"
