"""Real `loyalty-bridge worker` processes killed mid-work: nothing is lost, nothing is applied twice,
and SIGTERM lets the running job finish."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.queues.firehose import FirehoseQueue
from shared.settings import Settings, plain_database_url
from tests.e2e.conftest import eventually, own_database_sessionmaker, own_database_settings
from tests.factories import TenantFixture, make_tenant
from tests.inbound_helpers import custom_event, event_request, post_firehose, refresh_configs

REQUESTS = 300
# The request whose batch the crash interrupts: a later batch, so earlier ones are committed.
HELD = REQUESTS - 50
EVENTS_PER_REQUEST = 3
CUSTOMERS = 12


@pytest.fixture
def settings(settings: Settings, own_database_url: str) -> Settings:
    """A database of each test alone (tests/e2e/conftest.py): the worker's sweeps would otherwise
    also take up what earlier tests left in the shared one, and its stop could outlast its bound."""
    return own_database_settings(settings, own_database_url)


@pytest.fixture
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with own_database_sessionmaker(settings) as sessions:
        yield sessions


@dataclass
class Database:
    """A direct connection for watching the worker from outside and for holding locks."""

    connection: asyncpg.Connection
    tenant_id: str

    async def processed(self) -> int:
        count: int = await self.connection.fetchval(
            "SELECT count(*) FROM processed_request WHERE tenant_id = $1", self.tenant_id
        )
        return count

    async def workers_waiting_on_a_lock(self) -> int:
        count: int = await self.connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'loyalty-bridge-worker' AND wait_event_type = 'Lock'"
        )
        return count


@pytest.fixture
async def tenant(app, sessionmaker) -> TenantFixture:
    created = await make_tenant(
        sessionmaker,
        inbound={"auto_subscribe": True},
        inbound_mappings=[
            {"loyalty_event": "tick", "event_type": "custom_event", "event_name": "tick", "attributes": {"n": "{n}"}}
        ],
    )
    await refresh_configs(app)
    return created


@pytest.fixture
async def database(settings: Settings, tenant: TenantFixture) -> AsyncIterator[Database]:
    connection = await asyncpg.connect(plain_database_url(settings.require_database_url()))
    yield Database(connection, tenant.id)
    await connection.close()


@pytest.fixture
async def blocker(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A second connection whose open transaction holds a request's processed_request row, so the
    job applying that request waits, mid-transaction, until the test lets it go."""
    connection = await asyncpg.connect(plain_database_url(settings.require_database_url()))
    yield connection
    await connection.close()


async def hold_request(blocker: asyncpg.Connection, tenant_id: str, request_id: str) -> asyncpg.transaction.Transaction:
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute(
        "INSERT INTO processed_request (tenant_id, request_id) VALUES ($1, $2)", tenant_id, request_id
    )
    return transaction


async def test_worker_killed_mid_backlog_loses_and_duplicates_nothing(
    client, settings, tenant, database, blocker, spawn
) -> None:
    payloads = [
        event_request(
            tenant,
            *(custom_event("tick", {"n": f"{index}.{event}"}) for event in range(EVENTS_PER_REQUEST)),
            customer=f"C-{index % CUSTOMERS}",
        )
        for index in range(REQUESTS)
    ]
    for payload in payloads:
        assert (await post_firehose(client, payload)).status_code == 200
    # The batch holding request HELD will be cut off while waiting inside its transaction.
    held = await hold_request(blocker, tenant.id, payloads[HELD]["id"])

    first = spawn("worker")

    async def mid_backlog() -> bool:
        return bool(await database.workers_waiting_on_a_lock() >= 1 and await database.processed() > 0)

    await eventually(mid_backlog, timeout=60)
    first.signal(signal.SIGKILL)
    await first.wait(10)
    applied_before_the_crash = await database.processed()  # the blocker's row is not committed
    await held.rollback()
    assert applied_before_the_crash < REQUESTS, "the crash happened before the backlog was done"
    print(f"requests applied before the crash: {applied_before_the_crash} of {REQUESTS}")

    # A crash leaves the batch in hand claimed by the dead worker; its heartbeat lapses within
    # seconds and the next worker releases and applies it (no lease to wait out).
    redis = Redis.from_url(settings.require_redis_url())
    try:
        queue = FirehoseQueue(redis, settings.queue_name)
        held_member = queue.member(tenant.id, payloads[HELD]["id"])
        owners = await queue.claim_owners()
        assert held_member in owners, "the interrupted batch is still claimed, with its owner"
    finally:
        await redis.aclose()

    crashed_at = time.monotonic()
    second = spawn("worker")

    async def all_applied() -> bool:
        return bool(await database.processed() == REQUESTS)

    await eventually(all_applied, timeout=60)
    print(f"every request applied {time.monotonic() - crashed_at:.1f}s after the crash")
    second.signal(signal.SIGTERM)
    assert await second.wait(30) == 0, second.output()

    rows = await database.connection.fetch(
        "SELECT request_id, source_event_id, data->>'n' AS n, dedupe_key FROM ledger_event WHERE tenant_id = $1",
        tenant.id,
    )
    assert len(rows) == REQUESTS * EVENTS_PER_REQUEST
    assert len({row["dedupe_key"] for row in rows}) == len(rows)
    assert sorted(row["n"] for row in rows) == sorted(
        f"{index}.{event}" for index in range(REQUESTS) for event in range(EVENTS_PER_REQUEST)
    )
    expected_pairs = {(p["id"], e["id"]) for p in payloads for e in p["events"]}
    assert {(row["request_id"], row["source_event_id"]) for row in rows} == expected_pairs


async def test_sigterm_lets_the_running_job_finish(client, settings, tenant, database, blocker, spawn) -> None:
    payload = event_request(tenant, custom_event("tick", {"n": "only"}), customer="C-term")
    assert (await post_firehose(client, payload)).status_code == 200
    held = await hold_request(blocker, tenant.id, payload["id"])
    worker = spawn("worker")

    async def job_running() -> bool:
        return bool(await database.workers_waiting_on_a_lock() >= 1)

    await eventually(job_running, timeout=30)
    worker.signal(signal.SIGTERM)
    with pytest.raises(AssertionError, match="still running"):
        await worker.wait(0.5)  # it waits for its running job instead of exiting
    await held.rollback()
    assert await worker.wait(30) == 0, worker.output()
    actions = await database.connection.fetch(
        "SELECT action, data->>'n' AS n FROM ledger_event WHERE tenant_id = $1", tenant.id
    )
    assert [(row["action"], row["n"]) for row in actions] == [("tick", "only")]
    assert await database.processed() == 1
