"""Measurements read back from PostgreSQL: drain rates, ceiling inserts, end-to-end visibility."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import asyncpg

from shared.settings import plain_database_url


async def count_rows(database_url: str, sql: str, *args: object) -> int:
    connection = await asyncpg.connect(plain_database_url(database_url))
    try:
        value: int = await connection.fetchval(sql, *args)
        return value
    finally:
        await connection.close()


async def drain_rate(
    database_url: str, sql: str, args: tuple[object, ...], expected: int, stall_seconds: float = 15.0
) -> tuple[int, float]:
    """Poll a count until it reaches `expected` (or stops moving); (rows done, rows/s).

    The clock starts when the count first moves, so process start-up is not counted."""
    connection = await asyncpg.connect(plain_database_url(database_url))
    try:
        first_at: float | None = None
        first_count = 0
        initial: int = await connection.fetchval(sql, *args)
        last_change_at = time.monotonic()
        last = initial
        while True:
            value: int = await connection.fetchval(sql, *args)
            now = time.monotonic()
            if value != last:
                last, last_change_at = value, now
                if first_at is None:
                    first_at, first_count = now, value
            if value >= expected or now - last_change_at > stall_seconds:
                break
            await asyncio.sleep(0.05)
        elapsed = (last_change_at - first_at) if first_at else 0.0
        rate = (last - first_count) / elapsed if elapsed > 0 else 0.0
        return last, rate
    finally:
        await connection.close()


LEDGER_COLUMNS = (
    "tenant_id",
    "customer_id",
    "action",
    "data",
    "source",
    "request_id",
    "source_event_id",
    "dedupe_key",
    "occurred_at",
)


async def _ceiling_tenant(connection: asyncpg.Connection, tenant_id: str, rows: int) -> list[tuple[object, ...]]:
    """A tenant with 1000 customers, and `rows` ledger rows of the bench's shape for it."""
    await connection.execute(
        "INSERT INTO tenant (id, name, engine_key_hash) VALUES ($1, 'ceiling', md5(random()::text))", tenant_id
    )
    await connection.executemany(
        "INSERT INTO customer (tenant_id, id, status, attributes) VALUES ($1, $2, 'inactive', '{}'::jsonb)",
        [(tenant_id, f"bench-customer-{n}") for n in range(1000)],
    )
    now = datetime.now(UTC)
    data = '{"sku": "SKU-1", "amount": "10", "tier": "gold"}'
    return [
        (
            tenant_id,
            f"bench-customer-{n % 1000}",
            "mp_purchase",
            data,
            "mparticle",
            f"req-{n // 5}",
            f"evt-{n % 5}",
            f"req-{n // 5}/evt-{n % 5}/{n % 5}",
            now,
        )
        for n in range(rows)
    ]


async def copy_ceiling(database_url: str, tenant_id: str, rows: int) -> float:
    """Ledger rows/s written by asyncpg COPY of the same rows, in one transaction: the fastest a
    client can load them (no conflict check, so a reference beside the executemany ceiling)."""
    connection = await asyncpg.connect(plain_database_url(database_url))
    try:
        records = await _ceiling_tenant(connection, tenant_id, rows)
        started = time.perf_counter()
        async with connection.transaction():
            await connection.copy_records_to_table("ledger_event", records=records, columns=LEDGER_COLUMNS)
        return rows / (time.perf_counter() - started)
    finally:
        await connection.close()


async def executemany_ceiling(database_url: str, tenant_id: str, rows: int) -> float:
    """Ledger rows/s written by asyncpg executemany of the same shape of rows, in one transaction."""
    connection = await asyncpg.connect(plain_database_url(database_url))
    try:
        records = await _ceiling_tenant(connection, tenant_id, rows)
        started = time.perf_counter()
        async with connection.transaction():
            await connection.executemany(
                "INSERT INTO ledger_event (tenant_id, customer_id, action, data, source, request_id,"
                " source_event_id, dedupe_key, occurred_at) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9)"
                " ON CONFLICT (tenant_id, dedupe_key) DO NOTHING",
                records,
            )
        return rows / (time.perf_counter() - started)
    finally:
        await connection.close()


class VisibilityWatcher:
    """Polls the ledger every few ms and records when each new row became visible, so that
    (visible time - occurred_at = the send time stamped by wrk) is the end-to-end latency."""

    # Ids are taken at insert and become visible at commit: a row can show up after higher ids when
    # transactions overlap (a worker applies two batches at once, up to 200 requests of 5 events
    # each). Each poll reads from the lowest id not seen yet (a gap: a batch still committing), but
    # never more than this far back (an id used by a rolled-back insert leaves a gap forever);
    # phase_e2e checks every row was seen.
    LOOKBACK_IDS = 1000

    def __init__(self, database_url: str, tenant_id: str, request_prefix: str, poll_seconds: float = 0.01) -> None:
        self.database_url = database_url
        self.tenant_id = tenant_id
        self.request_prefix = request_prefix
        self.poll_seconds = poll_seconds
        self.latencies_ms: list[float] = []
        # When each latency was seen (UNIX seconds), for the per-second breakdown (`by_second`).
        self.seen_at_seconds: list[float] = []
        # Of each latency, the part before the worker's transaction began (ledger recorded_at is
        # its start time): proxy, queue and claim; the rest is the transaction and the poll.
        self.before_transaction_ms: list[float] = []
        self._stop = asyncio.Event()
        self._watching = asyncio.Event()

    async def start(self) -> asyncio.Task[None]:
        """Run in the background; return once the watcher is polling (rows committed before its
        first poll would be seen late, and counted as latency)."""
        task = asyncio.create_task(self.run())
        watching = asyncio.create_task(self._watching.wait())
        await asyncio.wait({task, watching}, return_when=asyncio.FIRST_COMPLETED)
        watching.cancel()
        if task.done():
            task.result()  # the watcher's error
        return task

    async def run(self) -> None:
        # The ledger grows by a million rows within minutes of a bench run, faster than autovacuum
        # analyzes it: planning with the stale size, PostgreSQL scanned the whole table for each
        # poll (150-190 ms a poll with ~1.1 M rows), and the watcher's lag showed up as latency.
        connection = await asyncpg.connect(
            plain_database_url(self.database_url), server_settings={"enable_seqscan": "off"}
        )
        try:
            # Every id up to `complete` was seen (or predates the run); `seen` holds those above it.
            complete = newest = await connection.fetchval("SELECT coalesce(max(id), 0) FROM ledger_event")
            seen: set[int] = set()
            self._watching.set()
            while not self._stop.is_set():
                # A primary-key range scan (the tenant and request filters in Python). Re-reading
                # a fixed window each poll instead (1,000 rows every 10 ms) took a third of a
                # core on this 2-core machine from the pair being measured.
                rows = await connection.fetch(
                    "SELECT id, tenant_id, request_id, occurred_at, recorded_at FROM ledger_event WHERE id > $1",
                    max(complete, newest - self.LOOKBACK_IDS),
                )
                seen_at = datetime.now(UTC)
                for row in rows:
                    row_id = row["id"]
                    if row_id in seen:
                        continue
                    seen.add(row_id)
                    newest = max(newest, row_id)
                    if row["tenant_id"] == self.tenant_id and (row["request_id"] or "").startswith(
                        self.request_prefix
                    ):
                        self.latencies_ms.append((seen_at - row["occurred_at"]).total_seconds() * 1000)
                        self.seen_at_seconds.append(seen_at.timestamp())
                        self.before_transaction_ms.append(
                            (row["recorded_at"] - row["occurred_at"]).total_seconds() * 1000
                        )
                complete = max(complete, newest - self.LOOKBACK_IDS)
                while complete + 1 in seen:
                    complete += 1
                seen = {row_id for row_id in seen if row_id > complete}
                await asyncio.sleep(self.poll_seconds)
        finally:
            await connection.close()

    def stop(self) -> None:
        self._stop.set()

    def by_second(self) -> list[dict[str, float]]:
        """Per second of the run (by when rows became visible): rows, p50, p99 and max latency, so a
        tail can be told apart as spread out or as one stall (and matched with the host's I/O)."""
        buckets: dict[int, list[float]] = {}
        for seen_at, latency in zip(self.seen_at_seconds, self.latencies_ms, strict=True):
            buckets.setdefault(int(seen_at), []).append(latency)
        return [
            {
                "second": second,
                "rows": len(values),
                "p50_ms": percentile(values, 0.5),
                "p99_ms": percentile(values, 0.99),
                "max_ms": max(values),
            }
            for second, values in sorted(buckets.items())
        ]


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]
