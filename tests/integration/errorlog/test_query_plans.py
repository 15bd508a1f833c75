"""Query plans of the error log pages on a large table: every filter and sort is served by an index.

A database of its own is bulk-loaded with 300k entries for one tenant plus two noise tenants and
ANALYZEd; then `EXPLAIN (FORMAT JSON)` of the repository's own page statements (first pages and
pages after a cursor) must show index access only (no Seq Scan on incoming_error) and no Sort,
except a Sort over the rows an index condition on a selective filter already narrowed down, or
over a narrow time window or rare message the repository counted (capped) and reads first.
Plans are asserted, never timings. The indexes are the migration's: their definitions are read
back, dropped for the bulk load and recreated verbatim (building them once is much faster than
maintaining them row by row).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.sql import Executable

from shared.errorlog.repository import (
    IncomingErrorFilters,
    IncomingErrorRepository,
    KeysetPosition,
    ListOrder,
    SortField,
    expired_tenants_statement,
    purge_batch_statement,
)
from tests.scratch_database import scratch_database

BIG_TENANT = "t-plan-big"
NOISE_TENANTS = ("t-plan-noise-1", "t-plan-noise-2")
BIG_ROWS = 300_000
NOISE_ROWS = 25_000
PAGE = 51  # a page of 50 plus the look-ahead row
NOW = datetime(2025, 6, 1, tzinfo=UTC)

# One entry every 25 s back from NOW (300k cover ~87 days). Frequent and rare values for each
# filter: proxy_forwarding is 1 in 500 sources, LIST_INACTIVE 1 in 1000 codes, "quarantined" 1
# in 5000 messages; request ids repeat three times and one in ten is NULL.
FILL_SQL = """
INSERT INTO incoming_error (tenant_id, request_id, error_code, message, source, created_at, logged_at)
SELECT :tenant_id,
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'req-' || lpad((g / 3)::text, 7, '0') END,
       CASE WHEN g % 1000 = 0 THEN 'LIST_INACTIVE'
            ELSE (ARRAY['CUSTOMER_NOT_FOUND', 'INVALID_TOKEN', 'MISSING_IDENTIFIER', 'PROCESSING_FAILED'])[1 + g % 4]
       END,
       CASE WHEN g % 5000 = 0 THEN 'list quarantined ' || g
            ELSE (ARRAY['customer not found ', 'token rejected ', 'no identifier ', 'mapping failed '])[1 + g % 4] || g
       END,
       CASE WHEN g % 500 = 0 THEN 'proxy_forwarding'
            ELSE (ARRAY['proxy_request', 'engine_request', 'engine_processing'])[1 + g % 3]
       END,
       CAST(:now AS timestamptz) - make_interval(secs => g * 25 + 3),
       CAST(:now AS timestamptz) - make_interval(secs => g * 25)
FROM generate_series(:rows, 1, -1) AS g  -- oldest first, so ids grow with time as in production
"""


@pytest.fixture(scope="module")
async def plan_connection(service_urls) -> AsyncIterator[AsyncConnection]:
    async with scratch_database(service_urls[0], "lb_plan") as url:
        engine = create_async_engine(url)
        try:
            await _bulk_load(engine)
            async with engine.connect() as connection:
                yield connection
        finally:
            await engine.dispose()


async def _bulk_load(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        index_definitions = (
            await connection.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'incoming_error' "
                    "AND indexname <> 'pk_incoming_error'"
                )
            )
        ).all()
        for name, _ in index_definitions:
            await connection.execute(text(f'DROP INDEX "{name}"'))
        for tenant_id, rows in ((BIG_TENANT, BIG_ROWS), *((noise, NOISE_ROWS) for noise in NOISE_TENANTS)):
            await connection.execute(
                text("INSERT INTO tenant (id, name, engine_key_hash) VALUES (:id, :name, md5(:key))"),
                {"id": tenant_id, "name": tenant_id, "key": tenant_id},
            )
            await connection.execute(text(FILL_SQL), {"tenant_id": tenant_id, "now": NOW, "rows": rows})
        await connection.commit()

    async def build(definitions: list[str]) -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SET maintenance_work_mem = '256MB'"))
            for definition in definitions:
                await connection.execute(text(definition))
            await connection.commit()

    # Two sessions build the indexes side by side (one per core).
    definitions = [definition for _, definition in index_definitions]
    await asyncio.gather(build(definitions[0::2]), build(definitions[1::2]))
    async with engine.connect() as connection:
        await connection.execute(text("ANALYZE incoming_error"))
        await connection.commit()


async def explain(connection: AsyncConnection, statement: Executable) -> dict[str, Any]:
    """The plan PostgreSQL picks for `statement` with its parameters bound as asyncpg sends them."""
    compiled = statement.compile(dialect=asyncpg_dialect.dialect())
    parameters = [compiled.params[name] for name in compiled.positiontup or ()]
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None
    plan = await raw.fetchval("EXPLAIN (FORMAT JSON) " + compiled.string, *parameters)
    document = json.loads(plan) if isinstance(plan, str) else plan
    root: dict[str, Any] = document[0]["Plan"]
    return root


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def describe(plan: dict[str, Any], depth: int = 0) -> str:
    details = [plan["Node Type"]] + [
        f"{key}={plan[key]}"
        for key in ("Index Name", "Index Cond", "Recheck Cond", "Filter", "Sort Key")
        if key in plan
    ]
    return "\n".join(
        ["  " * depth + " ".join(details), *(describe(child, depth + 1) for child in plan.get("Plans", []))]
    )


def assert_index_access_only(plan: dict[str, Any]) -> None:
    for node in nodes(plan):
        if node.get("Relation Name") == "incoming_error" and node["Node Type"] != "ModifyTable":
            assert node["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan"), describe(plan)


def assert_no_sort(plan: dict[str, Any]) -> None:
    assert not [n for n in nodes(plan) if n["Node Type"] in ("Sort", "Incremental Sort")], describe(plan)


def assert_sorts_only_narrowed_rows(plan: dict[str, Any], column: str) -> None:
    """Every Sort reads rows an index condition on `column` selected, not the tenant's whole log."""
    for sort in (n for n in nodes(plan) if n["Node Type"] in ("Sort", "Incremental Sort")):
        conditions = [n.get("Index Cond", "") + n.get("Recheck Cond", "") for n in nodes(sort) if n is not sort]
        assert any(column in condition for condition in conditions), describe(plan)


@dataclass(frozen=True)
class Case:
    filters: IncomingErrorFilters
    order: ListOrder
    after: KeysetPosition | None = None
    # None: the index yields the order (no Sort at all); else a Sort may read rows narrowed by an
    # index condition on this column.
    narrowed_by: str | None = None
    # The filter matches few rows, so the repository must read them first and sort them after.
    filtered_first: bool = False


MIDDLE_ID = 150_000
MIDDLE_VALUES: dict[SortField, Any] = {
    SortField.ID: MIDDLE_ID,
    SortField.REQUEST_ID: "req-0050000",
    SortField.ERROR_CODE: "INVALID_TOKEN",
    SortField.MESSAGE: "mapping failed 150000",
    SortField.SOURCE: "engine_request",
    SortField.CREATED_AT: NOW - timedelta(days=40),
    SortField.LOGGED_AT: NOW - timedelta(days=40),
}
NEWEST_FIRST = ListOrder(SortField.LOGGED_AT, descending=True)
MIDDLE_OF_DEFAULT = KeysetPosition(NOW - timedelta(days=40), MIDDLE_ID)


def _cases() -> Iterator[Any]:
    for field in SortField:
        for descending in (False, True):
            order = ListOrder(field, descending)
            name = f"sort-{'-' if descending else ''}{field}"
            yield pytest.param(Case(IncomingErrorFilters(), order), id=name)
            position = KeysetPosition(MIDDLE_VALUES[field], MIDDLE_ID)
            yield pytest.param(Case(IncomingErrorFilters(), order, position), id=f"{name}-after-cursor")
    day_40 = NOW - timedelta(days=40)
    one_day = {"from": day_40, "to": day_40 + timedelta(days=1)}
    filters = {
        "source": (IncomingErrorFilters(source="engine_request"), None, False),
        "source-rare": (IncomingErrorFilters(source="proxy_forwarding"), None, False),
        "error_code": (IncomingErrorFilters(error_code="INVALID_TOKEN"), None, False),
        "error_code-rare": (IncomingErrorFilters(error_code="LIST_INACTIVE"), None, False),
        "logged-range": (IncomingErrorFilters(logged_from=one_day["from"], logged_to=one_day["to"]), None, False),
        "request_id": (IncomingErrorFilters(request_id="req-0050000"), "request_id", False),
        "message-rare": (IncomingErrorFilters(message_contains="QUARANTINED"), "message", True),
        "message-frequent": (IncomingErrorFilters(message_contains="not found"), "message", False),
        "created-range": (
            IncomingErrorFilters(created_from=one_day["from"], created_to=one_day["to"]),
            "created_at",
            True,
        ),
        "created-from": (IncomingErrorFilters(created_from=day_40), "created_at", False),
    }
    for name, (flt, narrowed_by, filtered_first) in filters.items():
        for after, suffix in ((None, ""), (MIDDLE_OF_DEFAULT, "-after-cursor")):
            case = Case(flt, NEWEST_FIRST, after, narrowed_by=narrowed_by, filtered_first=filtered_first)
            yield pytest.param(case, id=f"filter-{name}{suffix}")
    # A time window with a list sorted on another field: the window's rows are found first.
    for name, flt, order, column in (
        (
            "logged-range",
            IncomingErrorFilters(logged_from=one_day["from"], logged_to=one_day["to"]),
            ListOrder(SortField.CREATED_AT, descending=False),
            "logged_at",
        ),
        (
            "created-range",
            IncomingErrorFilters(created_from=one_day["from"], created_to=one_day["to"]),
            ListOrder(SortField.ERROR_CODE, descending=False),
            "created_at",
        ),
        (
            "created-range",
            IncomingErrorFilters(created_from=one_day["from"], created_to=one_day["to"]),
            ListOrder(SortField.LOGGED_AT, descending=False),
            "created_at",
        ),
    ):
        case = Case(flt, order, narrowed_by=column, filtered_first=True)
        yield pytest.param(case, id=f"filter-{name}-sort-{order.field}")


@pytest.mark.parametrize("tenant_id", [BIG_TENANT, NOISE_TENANTS[0]])
@pytest.mark.parametrize("case", list(_cases()))
async def test_page_query_is_served_by_an_index(plan_connection, tenant_id, case: Case) -> None:
    # The statement list_page runs, including its capped count of a time window's rows.
    async with AsyncSession(bind=plan_connection) as session:
        statement = await IncomingErrorRepository(session).page_query(
            tenant_id, filters=case.filters, order=case.order, after=case.after, limit=PAGE
        )
    plan = await explain(plan_connection, statement)
    assert_index_access_only(plan)
    # The OFFSET 0 fence marks a page read filter-first: at most a capped count of rows is sorted.
    filtered_first = " OFFSET " in str(statement.compile(dialect=asyncpg_dialect.dialect()))
    assert filtered_first or not case.filtered_first, "a narrow filter was not applied first"
    if filtered_first:
        assert [n for n in nodes(plan) if n["Node Type"] == "Sort"], describe(plan)
    elif case.narrowed_by is None:
        assert_no_sort(plan)
    else:
        assert_sorts_only_narrowed_rows(plan, case.narrowed_by)


async def test_the_retention_purge_walks_the_tenant_logged_at_index(plan_connection) -> None:
    cutoff = NOW - timedelta(days=80)
    tenants = await explain(plan_connection, expired_tenants_statement(cutoff))
    assert_index_access_only(tenants)
    batch = await explain(plan_connection, purge_batch_statement(BIG_TENANT, cutoff, 5000))
    assert_index_access_only(batch)
    assert_no_sort(batch)
    index_names = {node.get("Index Name") for node in nodes(batch)}
    assert {"ix_incoming_error_tenant_logged", "pk_incoming_error"} <= index_names, describe(batch)
