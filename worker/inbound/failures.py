"""Telling a PostgreSQL outage (retry later) from a failure of the work itself (log and stop)."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# Connection loss or refusal, server shutdown/restart/overload, deadlocks and serialization
# failures: all go away by themselves, so the work is retried rather than reported.
_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes ConnectionError (refused, reset)
    TimeoutError,  # includes asyncio's connect and command timeouts
    PoolTimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.TransactionRollbackError,  # deadlock detected, serialization failure
)


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be used; the job should be retried later."""


def is_transient_error(error: BaseException) -> bool:
    """Whether `error`, or the error it was raised from (SQLAlchemy wraps the driver's errors), is
    transient. Only explicit causes count: an unrelated error merely being handled at the time
    (`__context__`) does not make a bug look like an outage."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _TRANSIENT_ERRORS):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        orig = getattr(current, "orig", None)
        pending.extend([current.__cause__, orig if isinstance(orig, BaseException) else None])
    return False
