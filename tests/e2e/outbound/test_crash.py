"""A real worker SIGKILLed and Redis restarted (empty) while messages wait for resends: a new worker
delivers every message, none is lost, duplicates only ever repeat the same source ids, and each
customer's messages still arrive in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import Settings
from tests.e2e.outbound.helpers import all_delivered, load_attempts, load_messages, make_s2s_tenant, post_ok, wait_until
from tests.e2e.outbound.processes import WorkerProcess
from tests.fakes.s2s_server import FakeS2SServer
from tests.private_redis import PrivateRedis

CUSTOMERS = 6
MESSAGES_PER_CUSTOMER = 2
# Long enough for a message leased by the killed worker to expire (3 x timeout + 15 s) and be resent.
RECOVERY_WAIT_SECONDS = 60.0


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    await server.start()
    yield server
    server.stop()


@pytest.fixture
def crash_settings(settings: Settings, own_redis: PrivateRedis) -> Settings:
    return settings.model_copy(
        update={"redis_url": own_redis.url, "outbound_retry_base_seconds": 0.2, "outbound_max_resends": 50}
    )


@pytest.fixture
async def crash_client(crash_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The proxy, in process, enqueueing into the private Redis."""
    from proxy.app import create_app

    app: FastAPI = create_app(crash_settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client,
    ):
        yield client


async def test_a_killed_worker_and_a_restarted_redis_lose_no_message(
    crash_settings: Settings,
    crash_client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    fake_s2s: FakeS2SServer,
    own_redis: PrivateRedis,
    tmp_path: Path,
) -> None:
    tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
    fake_s2s.fail(503, times=None, api_key=tenant.api_key)
    first_worker = WorkerProcess(crash_settings, tmp_path / "worker-1.log").start()
    second_worker = WorkerProcess(crash_settings, tmp_path / "worker-2.log")
    try:
        for round_number in range(MESSAGES_PER_CUSTOMER):
            for customer in range(CUSTOMERS):
                body = {"customer": {"id": f"c-{customer}", "round": round_number}}
                await post_ok(crash_client, tenant, "customer-updates", body)

        async def first_messages_waiting_for_resends() -> bool:
            messages = await load_messages(sessionmaker, tenant.id)
            return sum(m.status == "retrying" and m.attempts >= 2 for m in messages) == CUSTOMERS

        await wait_until(first_messages_waiting_for_resends, message="resends under way")
        first_worker.kill()
        own_redis.stop()
        await own_redis.start()  # same port, nothing left of the queue
        fake_s2s.clear_faults(tenant.api_key)
        second_worker.start()
        await wait_until(
            all_delivered(sessionmaker, tenant.id, CUSTOMERS * MESSAGES_PER_CUSTOMER),
            RECOVERY_WAIT_SECONDS,
            message="every message delivered by the new worker",
        )
    except AssertionError:
        print("first worker:\n", first_worker.output(), "\nsecond worker:\n", second_worker.output())
        raise
    finally:
        first_worker.kill()
        second_worker.kill()

    messages = await load_messages(sessionmaker, tenant.id)
    stored = {m.batch["source_request_id"]: m for m in messages}
    accepted = fake_s2s.accepted(tenant.api_key)
    # Nothing lost: every stored batch reached mParticle.
    assert {a.batch["source_request_id"] for a in accepted} == set(stored)
    # Duplicates (if any) are the stored batch again: same source_request_id and source_message_ids.
    for received in accepted:
        assert received.batch == stored[received.batch["source_request_id"]].batch
    # Per customer, first deliveries follow acceptance order.
    first_seen: list[str] = []
    for received in accepted:
        if received.batch["source_request_id"] not in first_seen:
            first_seen.append(received.batch["source_request_id"])
    for customer in range(CUSTOMERS):
        own = [m for m in messages if m.customer_id == f"c-{customer}"]
        assert [first_seen.index(m.batch["source_request_id"]) for m in own] == sorted(
            first_seen.index(m.batch["source_request_id"]) for m in own
        )
    # The attempts made before the crash are kept: each first message failed at least twice, then made it.
    for message in messages[:CUSTOMERS]:
        codes = [a.status_code for a in await load_attempts(sessionmaker, message.id)]
        assert codes[:2] == [503, 503] and codes[-1] == 202, codes
