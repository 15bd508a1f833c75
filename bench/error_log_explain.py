"""Error log pages on a large table: plans and execution times, plus the retention purge rate.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench.error_log_explain [--rows N]

Creates a database of its own (dropped at the end), migrates it, loads N entries for one tenant
(default 2,000,000 over 90 days) plus two noise tenants of N/10, then for every filter and sort
runs `EXPLAIN (ANALYZE, BUFFERS)` of the repository's page statement on the first page and on a
page deep in the list (after a cursor in the middle), and finally purges the oldest 10% of the
big tenant with the worker's purge in batches of 5000. Prints one line per query: the access path,
execution time and buffers touched. Timings depend on the machine; the tests assert plans only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine
from sqlalchemy.sql import ClauseElement

from shared.db import create_sessionmaker
from shared.errorlog.repository import (
    IncomingErrorFilters,
    IncomingErrorRepository,
    KeysetPosition,
    ListOrder,
    SortField,
)
from shared.migrate import upgrade_to_head
from shared.settings import normalize_database_url, plain_database_url
from worker.maintenance.service import purge_error_log

BIG_TENANT = "bench-big"
NOW = datetime(2025, 6, 1, tzinfo=UTC)
DAYS = 90

FILL_SQL = """
INSERT INTO incoming_error (tenant_id, request_id, error_code, message, source, created_at, logged_at)
SELECT :tenant_id,
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'req-' || lpad((g / 3)::text, 8, '0') END,
       CASE WHEN g % 1000 = 0 THEN 'LIST_INACTIVE'
            ELSE (ARRAY['CUSTOMER_NOT_FOUND', 'INVALID_TOKEN', 'MISSING_IDENTIFIER', 'PROCESSING_FAILED'])[1 + g % 4]
       END,
       CASE WHEN g % 5000 = 0 THEN 'list quarantined ' || g
            ELSE (ARRAY['customer not found ', 'token rejected ', 'no identifier ', 'mapping failed '])[1 + g % 4] || g
       END,
       CASE WHEN g % 500 = 0 THEN 'proxy_forwarding'
            ELSE (ARRAY['proxy_request', 'engine_request', 'engine_processing'])[1 + g % 3]
       END,
       CAST(:now AS timestamptz) - make_interval(secs => g * :step_seconds + 3),
       CAST(:now AS timestamptz) - make_interval(secs => g * :step_seconds)
FROM generate_series(:rows, 1, -1) AS g  -- oldest first, so ids grow with time as in production
"""


async def load(connection: AsyncConnection, rows: int) -> None:
    definitions = (
        await connection.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'incoming_error' "
                "AND indexname <> 'pk_incoming_error'"
            )
        )
    ).all()
    for name, _ in definitions:
        await connection.execute(text(f'DROP INDEX "{name}"'))
    for tenant_id, count in ((BIG_TENANT, rows), ("bench-noise-1", rows // 10), ("bench-noise-2", rows // 10)):
        await connection.execute(
            text("INSERT INTO tenant (id, name, engine_key_hash) VALUES (:id, :name, md5(:key))"),
            {"id": tenant_id, "name": tenant_id, "key": tenant_id},
        )
        step = DAYS * 86400 / count
        await connection.execute(
            text(FILL_SQL), {"tenant_id": tenant_id, "now": NOW, "rows": count, "step_seconds": step}
        )
    await connection.execute(text("SET maintenance_work_mem = '512MB'"))
    for _, definition in definitions:
        await connection.execute(text(definition))
    await connection.commit()
    # VACUUM sets the visibility map (index-only scans) as autovacuum would; it refuses transactions.
    autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
    await autocommit.execute(text("VACUUM ANALYZE incoming_error"))


async def explain_analyze(connection: AsyncConnection, statement: ClauseElement) -> dict[str, Any]:
    compiled = statement.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
    parameters = [compiled.params[name] for name in getattr(compiled, "positiontup", None) or ()]
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None
    plan = await raw.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + compiled.string, *parameters)
    document = json.loads(plan) if isinstance(plan, str) else plan
    result: dict[str, Any] = document[0]
    return result


def access_path(plan: dict[str, Any]) -> str:
    parts: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        kind = node["Node Type"]
        if kind not in ("Limit",):
            parts.append(f"{kind}({node['Index Name']})" if "Index Name" in node else kind)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan)
    return " > ".join(parts)


async def run(database_url: str, rows: int) -> None:
    base = normalize_database_url(database_url)
    name = f"lb_bench_errors_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(plain_database_url(base))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    engine = create_async_engine(url)
    try:
        await asyncio.to_thread(upgrade_to_head, url)
        started = time.perf_counter()
        async with engine.connect() as connection:
            await load(connection, rows)
        elapsed = time.perf_counter() - started
        print(f"loaded {rows:,} + 2 x {rows // 10:,} entries and built the indexes in {elapsed:.1f}s")
        async with engine.connect() as connection:
            await report_pages(connection)
        await report_purge(engine, rows)
    finally:
        await engine.dispose()
        admin = await asyncpg.connect(plain_database_url(base))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def report_pages(connection: AsyncConnection) -> None:
    middle = NOW - timedelta(days=DAYS / 2)
    deep_values: dict[SortField, Any] = {
        SortField.ID: None,
        SortField.REQUEST_ID: "req-00300000",
        SortField.ERROR_CODE: "MISSING_IDENTIFIER",
        SortField.MESSAGE: "no identifier",
        SortField.SOURCE: "engine_request",
        SortField.CREATED_AT: middle,
        SortField.LOGGED_AT: middle,
    }
    middle_id = int(
        (
            await connection.execute(
                text("SELECT max(id) / 2 FROM incoming_error WHERE tenant_id = :t"), {"t": BIG_TENANT}
            )
        ).scalar_one()
    )
    cases: list[tuple[str, IncomingErrorFilters, ListOrder, KeysetPosition | None]] = []
    for field in SortField:
        for descending in (False, True):
            order = ListOrder(field, descending)
            label = f"sort={'-' if descending else ''}{field}"
            value = middle_id if field is SortField.ID else deep_values[field]
            cases.append((label, IncomingErrorFilters(), order, None))
            cases.append((label + " (deep)", IncomingErrorFilters(), order, KeysetPosition(value, middle_id)))
    newest = ListOrder(SortField.LOGGED_AT, True)
    day = middle - timedelta(days=1)
    for label, filters in (
        ("source=engine_request", IncomingErrorFilters(source="engine_request")),
        ("source=proxy_forwarding (rare)", IncomingErrorFilters(source="proxy_forwarding")),
        ("error_code=INVALID_TOKEN", IncomingErrorFilters(error_code="INVALID_TOKEN")),
        ("error_code=LIST_INACTIVE (rare)", IncomingErrorFilters(error_code="LIST_INACTIVE")),
        ("request_id", IncomingErrorFilters(request_id="req-00300000")),
        ("message~'not found'", IncomingErrorFilters(message_contains="not found")),
        ("message~'quarantined' (rare)", IncomingErrorFilters(message_contains="quarantined")),
        ("created one day", IncomingErrorFilters(created_from=day, created_to=middle)),
        ("logged one day", IncomingErrorFilters(logged_from=day, logged_to=middle)),
    ):
        cases.append((label, filters, newest, None))
        cases.append((label + " (deep)", filters, newest, KeysetPosition(middle, middle_id)))
    # ms: execution time, plus the capped count of a time window where one is made (round trip included).
    print(f"{'query (limit 51, tenant ' + BIG_TENANT + ')':<48} {'ms':>8} {'buffers':>8}  access path")
    by_created = ListOrder(SortField.CREATED_AT, False)
    cases.append(
        ("logged one day, sort=created_at", IncomingErrorFilters(logged_from=day, logged_to=middle), by_created, None)
    )
    cases.append(
        (
            "created one day, sort=logged_at",
            IncomingErrorFilters(created_from=day, created_to=middle),
            ListOrder(SortField.LOGGED_AT, False),
            None,
        )
    )
    for label, filters, order, after in cases:
        async with AsyncSession(bind=connection) as session:
            started = time.perf_counter()
            statement = await IncomingErrorRepository(session).page_query(
                BIG_TENANT, filters=filters, order=order, after=after, limit=51
            )
            probe_ms = (time.perf_counter() - started) * 1000
        result = await explain_analyze(connection, statement)
        plan = result["Plan"]
        buffers = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
        total_ms = result["Execution Time"] + probe_ms
        print(f"{label:<48} {total_ms:>8.2f} {buffers:>8}  {access_path(plan)}")


async def report_purge(engine: Any, rows: int) -> None:
    sessionmaker = create_sessionmaker(engine)
    started = time.perf_counter()
    result = await purge_error_log(sessionmaker, retention_days=int(DAYS * 0.9), now=NOW)
    elapsed = time.perf_counter() - started
    print(
        f"purge: {result.deleted:,} of {rows + rows // 5:,} entries in {result.batches} batches of <= 5000, "
        f"{elapsed:.1f}s ({result.deleted / elapsed:,.0f} rows/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="entries of the big tenant")
    arguments = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        raise SystemExit("DATABASE_URL is required")
    asyncio.run(run(database_url, arguments.rows))


if __name__ == "__main__":
    main()
