"""Group commit for the outbound API: one writer stores every waiting call in one statement.

A request hands its message to the writer and waits; the writer takes everything that arrived
while the previous batch was being written (up to MAX_BATCH_MESSAGES / MAX_BATCH_BYTES) and
inserts it with one multi-row INSERT on a connection of its own in autocommit mode: the statement
is its own transaction, committed (flushed to the WAL) when PostgreSQL answers. Only then is each
request answered, so the 202 still follows the commit. Rows go in in arrival order, so `sequence`,
hence per-customer delivery order, follows acceptance order. Under light load a batch is one
message; under heavy load batches grow and the cost per message falls.

Failures: the writer fails fast. Checking a connection out is retried for CHECKOUT_RETRY_SECONDS
(a server that just restarted, a stale pooled connection), each try bounded by
CONNECT_TIMEOUT_SECONDS; the INSERT is bounded by STATEMENT_TIMEOUT_SECONDS and not retried (its
outcome is unknown once sent). When PostgreSQL cannot be reached (shared.transient) every request of
the batch gets 503 DATABASE_UNAVAILABLE within about two seconds, never a hang; any other failure
of a batch is retried one message at a time, so one bad message fails alone (422 for a value
PostgreSQL cannot store, else 503) and its neighbours are still stored. The waiting line is
bounded (MAX_WAITING_MESSAGES / MAX_WAITING_BYTES): beyond it calls are refused with 503 at once
rather than held in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.errors import BridgeError, DatabaseUnavailable, Unprocessable
from shared.logging import get_logger
from shared.outbound.accepted_messages import AcceptedMessage, AcceptedMessageStore
from shared.tasks import cancel_and_wait
from shared.transient import is_transient_database_error, retrying

logger = get_logger(__name__)

MAX_BATCH_MESSAGES = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_WAITING_MESSAGES = 5000
MAX_WAITING_BYTES = 32 * 1024 * 1024
STOP_DRAIN_SECONDS = 10.0
# The writer keeps one connection; after this long unused it goes back to the pool and the next
# batch checks one out again (the pool pings it), so an idle proxy sees a restarted server in time.
IDLE_CONNECTION_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 1.0
CHECKOUT_RETRY_SECONDS = 0.5
STATEMENT_TIMEOUT_SECONDS = 2.0

# A new outbound_message table has no planner statistics until autovacuum's first ANALYZE (up to
# autovacuum_naptime, a minute by default, after it fills). Until then the worker's held-back
# probe picks the (tenant, sequence) index, and claiming from a backlog of N messages costs O(N^2):
# 30k messages accepted in 10 s stalled delivery altogether. The writer, which fills the table,
# checks every STATISTICS_CHECK_MESSAGES stored messages until statistics exist, and analyzes the
# table itself when they are missing.
STATISTICS_CHECK_MESSAGES = 1000

StoredCallback = Callable[[Collection[str]], None]


@dataclass(eq=False)
class _Waiting:
    message: AcceptedMessage
    stored: asyncio.Future[bool]


def _refusal_of(error: Exception) -> BridgeError:
    """What a request whose message failed on its own is told."""
    if isinstance(error, asyncpg.DataError):
        # e.g. a NUL character, which PostgreSQL's jsonb cannot hold
        return Unprocessable("the message holds a value that cannot be stored (such as a NUL character)")
    return DatabaseUnavailable("the message could not be stored; retry later")


class PlannerStatisticsGuard:
    """Analyzes outbound_message once it has rows but no statistics yet (see STATISTICS_CHECK_MESSAGES)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._ready = False
        self._stored_since_check = 0
        self._task: asyncio.Task[None] | None = None

    def stored(self, count: int) -> None:
        """Count stored messages; start a check (in the background) every STATISTICS_CHECK_MESSAGES."""
        if self._ready:
            return
        self._stored_since_check += count
        if self._stored_since_check >= STATISTICS_CHECK_MESSAGES and (self._task is None or self._task.done()):
            self._stored_since_check = 0
            self._task = asyncio.create_task(self.check(), name="outbox-statistics")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)  # check() logs its failures: it never raises
        self._task = None

    async def check(self) -> None:
        """Analyze outbound_message now if it has no statistics (failures are logged, not raised)."""
        try:
            async with self._engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                store = AcceptedMessageStore(connection)
                if not await store.has_planner_statistics():
                    logger.info("outbox_table_analyzed", reason="no planner statistics yet")
                    await store.analyze()
            self._ready = True
        except Exception as error:  # retried after the next STATISTICS_CHECK_MESSAGES
            logger.warning("outbox_statistics_check_failed", error=_name(error))


class OutboxWriter:
    """The proxy's single writer of accepted outbound calls (start in the lifespan, stop at shutdown)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        on_stored: StoredCallback,
        max_batch_messages: int = MAX_BATCH_MESSAGES,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        max_waiting_messages: int = MAX_WAITING_MESSAGES,
        max_waiting_bytes: int = MAX_WAITING_BYTES,
    ) -> None:
        self._engine = engine
        self._statistics = PlannerStatisticsGuard(engine)
        self._connection: AsyncConnection | None = None
        self._connection_used_at = 0.0
        self._on_stored = on_stored
        self._max_batch_messages = max_batch_messages
        self._max_batch_bytes = max_batch_bytes
        self._max_waiting_messages = max_waiting_messages
        self._max_waiting_bytes = max_waiting_bytes
        self._waiting: deque[_Waiting] = deque()
        self._waiting_bytes = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    async def submit(self, message: AcceptedMessage) -> bool:
        """Store `message`: True once it is committed; False when the store refused it because its
        engine key, tenant or connection changed. ServiceUnavailable when it cannot be stored now."""
        if self._closing or self._task is None or self._task.done():
            raise DatabaseUnavailable("the proxy is not accepting outbound calls (shutting down)")
        if (
            len(self._waiting) >= self._max_waiting_messages
            or self._waiting_bytes + message.size_bytes > self._max_waiting_bytes
        ):
            raise DatabaseUnavailable("too many outbound calls are waiting to be stored; retry shortly")
        stored: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(message, stored))
        self._waiting_bytes += message.size_bytes
        self._wakeup.set()
        return await stored

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="outbox-writer")

    async def stop(self) -> None:
        """Write what is waiting (for at most STOP_DRAIN_SECONDS), then stop; later calls get 503."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_DRAIN_SECONDS)
            except TimeoutError:
                await cancel_and_wait(self._task)
            self._task = None
        await self._statistics.stop()

    async def _run(self) -> None:
        batch: list[_Waiting] = []
        try:
            while True:
                if not self._waiting:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                # Let the requests that are ready run up to their submit first: one more loop turn
                # of latency, larger batches (less work per message) when the proxy is busy.
                await asyncio.sleep(0)
                batch = self._take_batch()
                if batch:
                    await self._write(batch)
                batch = []
        finally:
            # Cancelled (or broken): nobody may wait forever.
            leftovers = [*batch, *self._waiting]
            self._waiting.clear()
            self._waiting_bytes = 0
            _fail(leftovers, lambda: DatabaseUnavailable("the proxy stopped before the message was stored"))
            await self._release()

    def _take_batch(self) -> list[_Waiting]:
        batch: list[_Waiting] = []
        batch_bytes = 0
        while self._waiting and len(batch) < self._max_batch_messages:
            size = self._waiting[0].message.size_bytes
            if batch and batch_bytes + size > self._max_batch_bytes:
                break
            waiting = self._waiting.popleft()
            self._waiting_bytes -= size
            # A request that gave up (client gone) never got its 202: do not store its message.
            if not waiting.stored.done():
                batch.append(waiting)
                batch_bytes += size
        return batch

    async def _write(self, batch: Sequence[_Waiting]) -> None:
        try:
            stored_ids = await self._insert([waiting.message for waiting in batch])
        except Exception as error:
            if is_transient_database_error(error):  # the connection, not the statement: row by row cannot help
                logger.warning("outbox_batch_not_stored", messages=len(batch), error=_name(error))
                _fail(batch, lambda: DatabaseUnavailable("the database is unavailable; retry later"))
            elif len(batch) == 1:
                logger.warning("outbound_message_not_stored", error=_name(error))
                _fail(batch, functools.partial(_refusal_of, error))
            else:
                logger.warning("outbox_batch_failed_storing_one_by_one", messages=len(batch), error=_name(error))
                for waiting in batch:
                    await self._write([waiting])
            return
        for waiting in batch:
            if not waiting.stored.done():
                waiting.stored.set_result(waiting.message.id in stored_ids)
        tenants = {waiting.message.tenant_id for waiting in batch if waiting.message.id in stored_ids}
        if tenants:
            self._on_stored(tenants)
            self._statistics.stored(len(stored_ids))

    async def _insert(self, messages: Sequence[AcceptedMessage]) -> set[uuid.UUID]:
        # One autocommit statement: the INSERT is its own transaction, committed (and flushed to
        # the WAL) when PostgreSQL answers. One round trip, one await on a busy event loop.
        connection = await self._checkout()
        try:
            async with asyncio.timeout(STATEMENT_TIMEOUT_SECONDS):
                stored = await AcceptedMessageStore(connection).add(messages, datetime.now(UTC))
        except Exception as error:
            # Anything but PostgreSQL refusing the statement may leave the connection unusable
            # (asyncpg after the server dropped it: "another operation is in progress").
            if is_transient_database_error(error) or not isinstance(error, asyncpg.PostgresError):
                await self._release(invalidate=True)
            raise
        self._connection_used_at = time.monotonic()
        return stored

    async def _checkout(self) -> AsyncConnection:
        """The writer's connection: the one it holds, else a new one (connecting is retried for
        up to CHECKOUT_RETRY_SECONDS; holding one costs nothing per batch)."""
        if self._connection is not None and time.monotonic() - self._connection_used_at > IDLE_CONNECTION_SECONDS:
            await self._release()
        if self._connection is None:
            async for attempt in retrying(
                "outbox connection",
                retry_on=is_transient_database_error,
                first_delay_seconds=0.05,
                max_delay_seconds=0.2,
                give_up_after_seconds=CHECKOUT_RETRY_SECONDS,
            ):
                with attempt:
                    self._connection = await self._connect()
        assert self._connection is not None  # the loop either connected or raised
        return self._connection

    async def _connect(self) -> AsyncConnection:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            connection = await self._engine.connect()
        try:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _release(self, *, invalidate: bool = False) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                if invalidate:  # broken: the pool must not hand it out again
                    await connection.invalidate()
                await connection.close()


def _name(error: BaseException) -> str:
    return error.__class__.__name__


def _fail(batch: Sequence[_Waiting], error: Callable[[], BridgeError]) -> None:
    # One exception object per request: each is raised (and gets its traceback) separately.
    for waiting in batch:
        if not waiting.stored.done():
            waiting.stored.set_exception(error())
