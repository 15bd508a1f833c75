"""Transient failures of PostgreSQL and Redis, and the one way to ride them out in process.

A transient failure goes away by itself (connection refused or lost, server restarting or
overloaded, deadlock): the work is retried, never reported as failed. Everything else (a bug, a
value the database refuses, a bad schema) is not, whatever SQLAlchemy wrapped it in.

`retrying` is the bridge's single in-process retry policy (tenacity): growing, jittered delays,
optionally bounded in time and interruptible by a stop event; `call_retrying` runs one call under
it, its delays named once per caller as a `RetryDelays`. The durable resend schedule of
outbound messages is not an in-process retry: it lives in PostgreSQL (shared/outbound/messages.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from redis import exceptions as redis_errors
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    stop_when_event_set,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryDelays:
    """How `call_retrying` waits: from `first_delay_seconds` doubling up to `max_delay_seconds`,
    giving up after `give_up_after_seconds` (never when None)."""

    first_delay_seconds: float
    max_delay_seconds: float
    give_up_after_seconds: float | None = None


# Connection loss or refusal, server shutdown/restart/overload, deadlocks and serialization
# failures.
TRANSIENT_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes ConnectionError (refused, reset)
    TimeoutError,  # includes asyncio's connect and command timeouts
    PoolTimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # client side: "connection is closed", "another operation is in progress"
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.TransactionRollbackError,  # deadlock detected, serialization failure
)
# asyncpg.InterfaceError subclasses that are configuration mistakes, not outages.
_PERMANENT_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ClientConfigurationError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
    asyncpg.exceptions.UnsupportedServerFeatureError,
)

# Connection refused or lost, a reply that never came, a server loading its data, failing over
# (read-only replica) or out of memory: the request may succeed later, or elsewhere (the spool).
TRANSIENT_QUEUE_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # includes BusyLoadingError and MaxConnectionsError
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
    redis_errors.TryAgainError,
    redis_errors.MasterDownError,
    OSError,
    TimeoutError,
)
_PERMANENT_QUEUE_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.AuthenticationError,
    redis_errors.AuthorizationError,
)


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and the errors it was raised from: explicit causes (`raise … from`) and the driver
    error SQLAlchemy wraps (`.orig`). An unrelated error merely being handled at the time
    (`__context__`) does not count: it must not make a bug look like an outage."""
    found: list[BaseException] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        orig = getattr(current, "orig", None)
        pending.extend([current.__cause__, orig if isinstance(orig, BaseException) else None])
    return found


def is_transient_database_error(error: BaseException) -> bool:
    """Whether `error` (or what it was raised from) means PostgreSQL is unavailable for now."""
    for current in _causes(error):
        if isinstance(current, _PERMANENT_DATABASE_ERRORS):
            return False
        if isinstance(current, TRANSIENT_DATABASE_ERRORS):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
    return False


def is_transient_queue_error(error: BaseException) -> bool:
    """Whether `error` (or what it was raised from) means Redis is unavailable for now. A refused
    password is a configuration mistake, not an outage (redis-py makes it a ConnectionError).
    redis-py turns a connection lost inside WATCH into a WatchError raised while handling it: that
    one counts by the error it handled."""
    for current in _causes(error):
        if isinstance(current, _PERMANENT_QUEUE_ERRORS):
            return False
        if isinstance(current, TRANSIENT_QUEUE_ERRORS):
            return True
        if isinstance(current, redis_errors.WatchError) and current.__context__ is not None:
            return is_transient_queue_error(current.__context__)
    return False


def retrying(
    description: str,
    *,
    retry_on: Callable[[BaseException], bool],
    first_delay_seconds: float = 0.5,
    max_delay_seconds: float = 10.0,
    give_up_after_seconds: float | None = None,
    stop: asyncio.Event | None = None,
    log_level: int = logging.WARNING,
) -> AsyncRetrying:
    """A tenacity policy: retry while `retry_on(error)`, waiting from `first_delay_seconds` up to
    `max_delay_seconds` (doubling, with jitter), until `give_up_after_seconds` have passed (never
    when None) or `stop` is set (which also cuts a wait short). The last error is re-raised when it
    gives up. Use a fresh one per call: tenacity keeps its attempt count on the object.

        async for attempt in retrying("firehose batch", retry_on=is_transient_database_error):
            with attempt:
                await apply()
    """
    stop_condition: stop_base = stop_never
    if give_up_after_seconds is not None:
        stop_condition = stop_after_delay(give_up_after_seconds)
    if stop is not None:
        stop_condition = stop_condition | stop_when_event_set(stop)  # type: ignore[arg-type]  # asyncio.Event has is_set() too

    def log_before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        logger.log(
            log_level,
            "%s failed (%s, attempt %d); retrying in %.2fs",
            description,
            error.__class__.__name__,
            state.attempt_number,
            delay,
        )

    async def sleep(seconds: float) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    return AsyncRetrying(
        retry=retry_if_exception(retry_on),
        wait=wait_exponential_jitter(
            multiplier=first_delay_seconds, max=max_delay_seconds, jitter=first_delay_seconds / 2
        ),
        stop=stop_condition,
        sleep=sleep,
        before_sleep=log_before_sleep,
        reraise=True,
    )


async def call_retrying(
    description: str,
    call: Callable[[], Awaitable[T]],
    *,
    retry_on: Callable[[BaseException], bool],
    delays: RetryDelays,
    stop: asyncio.Event | None = None,
    log_level: int = logging.WARNING,
) -> T:
    """`await call()` under the `retrying` policy of `delays`; the last error is raised when it gives
    up (or `stop` is set while it waits)."""
    async for attempt in retrying(
        description,
        retry_on=retry_on,
        first_delay_seconds=delays.first_delay_seconds,
        max_delay_seconds=delays.max_delay_seconds,
        give_up_after_seconds=delays.give_up_after_seconds,
        stop=stop,
        log_level=log_level,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last error when it gives up")
