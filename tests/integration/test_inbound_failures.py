"""Transient versus unexpected failures of inbound work: what is retried, what is reported."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from redis.asyncio import Redis
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from shared.queue import firehose_job_id
from shared.settings import Settings
from tests.factories import make_tenant
from tests.inbound_helpers import (
    AdminReader,
    custom_event,
    event_request,
    logged_errors,
    post_firehose,
    refresh_configs,
)
from worker.inbound_failures import is_transient_error
from worker.inbound_jobs import FUNCTIONS, retry_delay_seconds
from worker.main import build_worker


def _raised_from(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


def _handled_during(error: BaseException, context: BaseException) -> BaseException:
    error.__context__ = context
    return error


class _Orig(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        pytest.param(ConnectionRefusedError(111, "refused"), True, id="connection-refused"),
        pytest.param(OSError("network unreachable"), True, id="os-error"),
        pytest.param(TimeoutError(), True, id="timeout"),
        pytest.param(PoolTimeoutError("pool exhausted"), True, id="pool-timeout"),
        pytest.param(asyncpg.exceptions.ConnectionDoesNotExistError("closed"), True, id="connection-lost"),
        pytest.param(asyncpg.exceptions.CannotConnectNowError("starting up"), True, id="server-starting"),
        pytest.param(asyncpg.exceptions.AdminShutdownError("shutdown"), True, id="admin-shutdown"),
        pytest.param(asyncpg.exceptions.TooManyConnectionsError("too many"), True, id="too-many-connections"),
        pytest.param(asyncpg.exceptions.DeadlockDetectedError("deadlock"), True, id="deadlock"),
        pytest.param(asyncpg.exceptions.SerializationError("serialization"), True, id="serialization"),
        pytest.param(
            _raised_from(OperationalError("SELECT 1", {}, _Orig()), asyncpg.exceptions.ConnectionDoesNotExistError()),
            True,
            id="sqlalchemy-wrapping-connection-loss",
        ),
        pytest.param(
            DBAPIError("SELECT 1", {}, _Orig(), connection_invalidated=True), True, id="connection-invalidated"
        ),
        pytest.param(ValueError("bug"), False, id="bug"),
        pytest.param(KeyError("type"), False, id="key-error"),
        pytest.param(IntegrityError("INSERT", {}, _Orig()), False, id="integrity-error"),
        pytest.param(asyncpg.exceptions.UntranslatableCharacterError("\\u0000"), False, id="bad-data"),
        pytest.param(asyncpg.exceptions.UndefinedTableError("no table"), False, id="schema-error"),
        pytest.param(
            _handled_during(ValueError("bug"), ConnectionRefusedError()), False, id="bug-while-handling-an-outage"
        ),
    ],
)
def test_is_transient_error(error: BaseException, transient: bool) -> None:
    assert is_transient_error(error) is transient


@pytest.mark.parametrize(("job_try", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (40, 30.0)])
def test_retry_delays_grow_to_a_cap(job_try: int, delay: float) -> None:
    assert retry_delay_seconds(job_try) == delay


def test_retries_ride_out_minutes_of_outage() -> None:
    [function] = FUNCTIONS
    assert function.max_tries is not None
    assert sum(retry_delay_seconds(n) for n in range(1, function.max_tries)) > 10 * 60


async def test_database_outage_is_retried_not_reported(app, client, settings, sessionmaker, admin_headers) -> None:
    tenant = await make_tenant(
        sessionmaker,
        inbound={"auto_subscribe": True},
        inbound_mappings=[{"loyalty_event": "redeem", "event_type": "custom_event"}],
    )
    await refresh_configs(app)
    payload = event_request(tenant, custom_event("x"), customer="C-outage")
    response = await post_firehose(client, payload)
    assert response.status_code == 200

    # A worker whose PostgreSQL refuses connections takes the job once and defers it.
    unreachable = settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/none"})
    worker = build_worker(unreachable, burst=True, handle_signals=False)
    worker.max_burst_jobs = 1
    try:
        await worker.main()
    finally:
        await worker.close()
    assert (worker.jobs_retried, worker.jobs_failed, worker.jobs_complete) == (1, 0, 0)
    redis = Redis.from_url(settings.require_redis_url())
    try:
        score = await redis.zscore(settings.queue_name, firehose_job_id(settings.queue_name, tenant.id, payload["id"]))
    finally:
        await redis.aclose()
    assert score is not None and score > time.time() * 1000, "deferred, not dropped"
    assert await logged_errors(sessionmaker, tenant.id) == []

    # Once PostgreSQL is reachable, the deferred job is applied.
    await asyncio.wait_for(_drain(settings), timeout=30)
    ledger = await AdminReader(client, admin_headers, tenant.id).ledger("C-outage")
    assert [event["action"] for event in ledger] == ["redeem"]


async def _drain(settings: Settings) -> None:
    from tests.conftest import run_worker_until_idle

    await run_worker_until_idle(settings)
