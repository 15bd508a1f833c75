"""Retention: the error log keeps ERROR_LOG_RETENTION_DAYS (by logged_at), the Firehose idempotency
records 30 days; purges delete in bounded batches until done, and the worker runs them on its own.

Purges act across tenants, so these tests use a database of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import create_engine, create_sessionmaker
from shared.models import IncomingError, ProcessedRequest
from shared.queues.jobs import JobName
from tests.conftest import run_worker_until_idle
from tests.factories import make_tenant
from tests.scratch_database import scratch_database
from worker.maintenance import jobs as maintenance_jobs
from worker.maintenance.service import purge_error_log, purge_processed_requests

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def retention_database(service_urls) -> AsyncIterator[str]:
    async with scratch_database(service_urls[0], "lb_retention") as url:
        yield url


@pytest.fixture
async def scratch_settings(settings, retention_database):
    return settings.model_copy(update={"database_url": retention_database})


@pytest.fixture
async def scratch_sessionmaker(scratch_settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the retention database, emptied of what earlier tests here left behind."""
    engine = create_engine(scratch_settings, application_name="tests-retention", pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    far_future = NOW + timedelta(days=36500)
    await purge_error_log(sessionmaker, retention_days=1, now=far_future)
    await purge_processed_requests(sessionmaker, retention_days=1, now=far_future)
    yield sessionmaker
    await engine.dispose()


async def add_errors(sessionmaker, tenant_id: str, logged_ats: list[datetime]) -> list[int]:
    async with sessionmaker() as session:
        rows = [
            IncomingError(
                tenant_id=tenant_id,
                request_id=f"req-{n}",
                error_code="CUSTOMER_NOT_FOUND",
                message=f"customer {n} not found",
                source="engine_request",
                created_at=logged_at - timedelta(seconds=1),
                logged_at=logged_at,
            )
            for n, logged_at in enumerate(logged_ats)
        ]
        session.add_all(rows)
        await session.commit()
        return [row.id for row in rows]


async def remaining_errors(sessionmaker, tenant_ids: list[str]) -> set[int]:
    async with sessionmaker() as session:
        found = await session.execute(select(IncomingError.id).where(IncomingError.tenant_id.in_(tenant_ids)))
        return set(found.scalars())


async def add_processed(sessionmaker, tenant_id: str, processed_ats: dict[str, datetime]) -> None:
    async with sessionmaker() as session:
        session.add_all(
            ProcessedRequest(tenant_id=tenant_id, request_id=request_id, processed_at=processed_at)
            for request_id, processed_at in processed_ats.items()
        )
        await session.commit()


async def remaining_processed(sessionmaker, tenant_id: str) -> set[str]:
    async with sessionmaker() as session:
        found = await session.execute(
            select(ProcessedRequest.request_id).where(ProcessedRequest.tenant_id == tenant_id)
        )
        return set(found.scalars())


async def test_error_log_keeps_entries_inside_the_window(scratch_sessionmaker) -> None:
    first = await make_tenant(scratch_sessionmaker)
    second = await make_tenant(scratch_sessionmaker)
    window_start = NOW - timedelta(days=90)
    kept = await add_errors(
        scratch_sessionmaker, first.id, [window_start + timedelta(minutes=1), window_start, NOW - timedelta(days=1)]
    )
    purged = await add_errors(
        scratch_sessionmaker, first.id, [window_start - timedelta(minutes=1), NOW - timedelta(days=400)]
    )
    kept += await add_errors(scratch_sessionmaker, second.id, [NOW])
    purged += await add_errors(scratch_sessionmaker, second.id, [window_start - timedelta(microseconds=1)])

    result = await purge_error_log(scratch_sessionmaker, retention_days=90, now=NOW)

    assert await remaining_errors(scratch_sessionmaker, [first.id, second.id]) == set(kept)
    assert result.deleted == len(purged)
    again = await purge_error_log(scratch_sessionmaker, retention_days=90, now=NOW)
    assert again.deleted == 0


async def test_error_log_purge_runs_in_bounded_batches_until_done(scratch_sessionmaker) -> None:
    tenants = [await make_tenant(scratch_sessionmaker) for _ in range(2)]
    old = NOW - timedelta(days=200)
    await add_errors(scratch_sessionmaker, tenants[0].id, [old + timedelta(seconds=n) for n in range(10)])
    await add_errors(scratch_sessionmaker, tenants[1].id, [old + timedelta(seconds=n) for n in range(4)])
    fresh = await add_errors(scratch_sessionmaker, tenants[1].id, [NOW])

    result = await purge_error_log(scratch_sessionmaker, retention_days=90, now=NOW, batch_size=3)

    # 10 rows in batches of 3, 3, 3, 1 and 4 rows in batches of 3, 1: no batch exceeded 3 rows.
    assert (result.deleted, result.batches) == (14, 6)
    assert await remaining_errors(scratch_sessionmaker, [tenant.id for tenant in tenants]) == set(fresh)


async def test_processed_request_ids_are_forgotten_after_30_days(scratch_sessionmaker) -> None:
    tenant = await make_tenant(scratch_sessionmaker)
    old = {f"old-{n}": NOW - timedelta(days=31, minutes=n) for n in range(5)}
    recent = {"recent": NOW - timedelta(days=29, hours=23), "today": NOW}
    await add_processed(scratch_sessionmaker, tenant.id, {**old, **recent})

    result = await purge_processed_requests(scratch_sessionmaker, now=NOW, batch_size=2)

    assert (result.deleted, result.batches) == (5, 3)
    assert await remaining_processed(scratch_sessionmaker, tenant.id) == set(recent)


async def test_worker_purges_at_start_with_the_configured_retention(scratch_settings, scratch_sessionmaker) -> None:
    tenant = await make_tenant(scratch_sessionmaker)
    now = datetime.now(UTC)
    kept = await add_errors(scratch_sessionmaker, tenant.id, [now - timedelta(days=6), now])
    await add_errors(scratch_sessionmaker, tenant.id, [now - timedelta(days=8)])
    await add_processed(
        scratch_sessionmaker, tenant.id, {"stale": now - timedelta(days=31), "fresh": now - timedelta(days=1)}
    )
    cron_jobs = {str(job.name): job for job in maintenance_jobs.CRON_JOBS}
    assert set(cron_jobs) == {JobName.PURGE_ERROR_LOG, JobName.PURGE_PROCESSED_REQUESTS}
    for job in cron_jobs.values():
        assert job.run_at_startup
        # arq keeps the schedule on these shared objects; an earlier worker of this test process
        # may have consumed the start-up run, so give this worker its own start.
        job.next_run = None

    await run_worker_until_idle(scratch_settings.model_copy(update={"error_log_retention_days": 7}))

    assert await remaining_errors(scratch_sessionmaker, [tenant.id]) == set(kept)
    assert await remaining_processed(scratch_sessionmaker, tenant.id) == {"fresh"}
