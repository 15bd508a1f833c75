"""Error-log entries whose write failed because PostgreSQL was out: kept in memory and written later.

The proxy answers a rejected request at once and logs it (CONTRACT §4); when PostgreSQL refuses
that write (an outage: shared.transient), the entry goes here instead of being dropped. One
background task writes the waiting entries in arrival order, retrying each with growing delays
(shared.transient.call_retrying) for up to GIVE_UP_AFTER_SECONDS. The line is bounded
(MAX_WAITING_ENTRIES): beyond it, and for entries still unwritten when the process stops, the
loss is logged. Start in the lifespan, stop at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.errorlog.writer import record_incoming_error
from shared.errors import ErrorCode, ErrorSource
from shared.tasks import cancel_and_wait
from shared.transient import RetryDelays, call_retrying, is_transient_database_error

logger = logging.getLogger(__name__)

MAX_WAITING_ENTRIES = 10_000
GIVE_UP_AFTER_SECONDS = 600.0
RETRY_DELAYS = RetryDelays(first_delay_seconds=0.5, max_delay_seconds=10.0, give_up_after_seconds=GIVE_UP_AFTER_SECONDS)
STOP_DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class ErrorLogEntry:
    """The arguments of one record_incoming_error call."""

    tenant_id: str
    source: ErrorSource
    error_code: ErrorCode
    message: str
    created_at: datetime
    request_id: str | None = None
    payload: Any | None = None

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of record_incoming_error (the payload is not copied)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


async def write_entry(sessionmaker: async_sessionmaker[AsyncSession], entry: ErrorLogEntry) -> None:
    """Write one entry in a transaction of its own."""
    async with session_scope(sessionmaker) as session:
        await record_incoming_error(session, **entry.arguments())


class DeferredErrorLog:
    """Writes, later, the entries PostgreSQL refused during an outage."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._waiting: asyncio.Queue[ErrorLogEntry] = asyncio.Queue(MAX_WAITING_ENTRIES)
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._write_forever(), name="deferred-error-log")

    async def stop(self) -> None:
        """Write what is waiting for up to STOP_DRAIN_SECONDS, then give up on the rest (logged)."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._waiting.join(), STOP_DRAIN_SECONDS)
        await cancel_and_wait(self._task)
        self._task = None
        if lost := self._waiting.qsize():
            logger.error("%d incoming error log entries lost at shutdown (PostgreSQL unavailable)", lost)

    def defer(self, entry: ErrorLogEntry) -> None:
        """Queue an entry whose write PostgreSQL refused; it is written once PostgreSQL is back."""
        try:
            self._waiting.put_nowait(entry)
        except asyncio.QueueFull:
            logger.error("incoming error log entry of tenant %s lost: too many waiting", entry.tenant_id)

    @property
    def waiting(self) -> int:
        return self._waiting.qsize()

    async def _write_forever(self) -> None:
        while True:
            entry = await self._waiting.get()
            try:
                await call_retrying(
                    "deferred error log write",
                    functools.partial(write_entry, self._sessionmaker, entry),
                    retry_on=is_transient_database_error,
                    delays=RETRY_DELAYS,
                )
                self.written += 1
            except Exception as error:
                logger.error("incoming error log entry of tenant %s lost (%s)", entry.tenant_id, type(error).__name__)
            finally:
                self._waiting.task_done()
