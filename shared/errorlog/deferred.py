"""Error-log entries whose write failed because PostgreSQL was out: kept in memory and written later.

The proxy answers a rejected request at once and logs it (CONTRACT §4); when PostgreSQL refuses
that write (an outage: shared.transient), the entry goes here instead of being dropped. One
background task writes the waiting entries in arrival order, retrying each with growing delays
(shared.transient.retrying) for up to GIVE_UP_AFTER_SECONDS. The line is bounded
(MAX_WAITING_ENTRIES): beyond it, and for entries still unwritten when the process stops, the
loss is logged. Start in the lifespan, stop at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.errorlog.writer import record_incoming_error
from shared.errors import ErrorCode, ErrorSource
from shared.transient import is_transient_database_error, retrying

logger = logging.getLogger(__name__)

MAX_WAITING_ENTRIES = 10_000
GIVE_UP_AFTER_SECONDS = 600.0
RETRY_FIRST_DELAY_SECONDS = 0.5
RETRY_MAX_DELAY_SECONDS = 10.0
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


async def write_entry(sessionmaker: async_sessionmaker[AsyncSession], entry: ErrorLogEntry) -> None:
    """Write one entry in a transaction of its own."""
    async with session_scope(sessionmaker) as session:
        await record_incoming_error(
            session,
            tenant_id=entry.tenant_id,
            source=entry.source,
            error_code=entry.error_code,
            message=entry.message,
            created_at=entry.created_at,
            request_id=entry.request_id,
            payload=entry.payload,
        )


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
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
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
                async for attempt in retrying(
                    "deferred error log write",
                    retry_on=is_transient_database_error,
                    first_delay_seconds=RETRY_FIRST_DELAY_SECONDS,
                    max_delay_seconds=RETRY_MAX_DELAY_SECONDS,
                    give_up_after_seconds=GIVE_UP_AFTER_SECONDS,
                ):
                    with attempt:
                        await write_entry(self._sessionmaker, entry)
                self.written += 1
            except Exception as error:
                logger.error("incoming error log entry of tenant %s lost (%s)", entry.tenant_id, type(error).__name__)
            finally:
                self._waiting.task_done()
