"""The worker process's own rules (worker/main.py): how soon crashed work is re-run, the in-progress
lease kept alive while a job runs, and burst workers that stop although cron jobs keep coming."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from arq.cron import cron
from redis.asyncio import Redis

import worker.main as worker_main
from shared.queue import firehose_job_id
from shared.settings import Settings, plain_database_url
from tests.factories import make_tenant
from tests.inbound_helpers import custom_event, event_request, post_firehose, refresh_configs
from worker.inbound_jobs import FIREHOSE_JOB_TIMEOUT_SECONDS
from worker.main import IN_PROGRESS_LEASE_SECONDS, build_worker, run_worker

IN_PROGRESS_PREFIX = "arq:in-progress:"


def test_crashed_work_is_taken_up_again_within_a_minute(settings: Settings) -> None:
    worker = build_worker(settings, burst=True, handle_signals=False)
    # arq sets a started job's in-progress key to this, whatever the longest job timeout is (the
    # retention crons allow themselves 30 minutes); a live worker renews it while the job runs.
    assert worker.in_progress_timeout_s == IN_PROGRESS_LEASE_SECONDS <= 50
    assert FIREHOSE_JOB_TIMEOUT_SECONDS <= IN_PROGRESS_LEASE_SECONDS


CRON_RUNS: list[str] = []


async def _every_second(ctx: dict[str, Any]) -> None:
    """A cron job that runs every second."""
    CRON_RUNS.append(ctx["job_id"])


async def test_burst_worker_stops_although_a_cron_job_runs_every_second(settings: Settings) -> None:
    worker = build_worker(settings, burst=True, handle_signals=False)
    every_second = cron(_every_second, second=None, run_at_startup=True, unique=True)
    worker.cron_jobs.append(every_second)
    worker.functions[every_second.name] = every_second
    CRON_RUNS.clear()
    try:
        await asyncio.wait_for(worker.main(), timeout=30)
    finally:
        await worker.close()
    assert len(CRON_RUNS) == 1, "the start-up run happened, and nothing was scheduled after it"


def test_cron_job_ids_are_scoped_by_queue(settings: Settings) -> None:
    mine = build_worker(settings, burst=True, handle_signals=False)
    other = build_worker(settings.model_copy(update={"queue_name": "another"}), burst=True, handle_signals=False)
    mine_names = {job.name for job in mine.cron_jobs}
    other_names = {job.name for job in other.cron_jobs}
    assert mine_names and not mine_names & other_names
    assert all(name.startswith(settings.queue_name + ":") for name in mine_names)
    assert all(job.next_run is None for job in mine.cron_jobs), "each worker has its own schedule"


async def test_lease_is_renewed_while_a_job_runs(
    app, client, settings: Settings, sessionmaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_main, "IN_PROGRESS_LEASE_SECONDS", 1)
    monkeypatch.setattr(worker_main, "LEASE_RENEWAL_SECONDS", 0.2)
    tenant = await make_tenant(
        sessionmaker,
        inbound={"auto_subscribe": True},
        inbound_mappings=[{"loyalty_event": "x", "event_type": "custom_event"}],
    )
    await refresh_configs(app)
    payload = event_request(tenant, custom_event("x"), customer="C-lease")
    assert (await post_firehose(client, payload)).status_code == 200
    in_progress_key = IN_PROGRESS_PREFIX + firehose_job_id(settings.queue_name, tenant.id, payload["id"])

    # Hold the job inside its transaction: its claim of the request waits on this uncommitted row.
    blocker = await asyncpg.connect(plain_database_url(settings.require_database_url()))
    redis = Redis.from_url(settings.require_redis_url())
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute(
        "INSERT INTO processed_request (tenant_id, request_id) VALUES ($1, $2)", tenant.id, payload["id"]
    )
    stop = asyncio.Event()
    running = asyncio.create_task(run_worker(settings, stop=stop, handle_signals=False))
    try:
        await until(lambda: redis.exists(in_progress_key), True)
        await asyncio.sleep(2.5)  # well past the 1 s lease: only renewals keep the key
        assert await redis.exists(in_progress_key), "the running job's lease was renewed"
        assert 0 < await redis.pttl(in_progress_key) <= 1000
        await transaction.rollback()
        await until(lambda: redis.exists(in_progress_key), False)
        ledger = await blocker.fetchval("SELECT count(*) FROM ledger_event WHERE tenant_id = $1", tenant.id)
        assert ledger == 1, "the job went on and finished"
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=30)
        await redis.aclose()
        await blocker.close()


async def until(probe: Any, expected: bool, timeout: float = 10.0) -> None:
    """Wait (bounded) until `await probe()` is truthy or falsy as expected."""
    async with asyncio.timeout(timeout):
        while bool(await probe()) is not expected:
            await asyncio.sleep(0.05)
