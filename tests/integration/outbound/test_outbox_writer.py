"""The outbound API's group-commit writer on real PostgreSQL: one statement per batch in arrival
order, the store's own key and connection check, failures that stay with their own message, a
bounded waiting line, recovery from a lost connection, and a drain at shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager

import orjson
import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from proxy.outbound.outbox_writer import OutboxWriter, PlannerStatisticsGuard
from shared.credentials import hash_key
from shared.db import create_engine
from shared.errors import ErrorCode, ServiceUnavailable, Unprocessable
from shared.models import OutboundMessage, OutboundSettings
from shared.outbound.accepted_messages import AcceptedMessage, AcceptedMessageStore
from shared.settings import Settings
from tests.factories import TenantFixture, make_tenant


def accepted(tenant: TenantFixture, customer_id: str = "c-1", **batch: object) -> AcceptedMessage:
    """A message as the outbound API hands it to the writer."""
    return AcceptedMessage(
        id=uuid.uuid4(),
        tenant_id=tenant.id,
        engine_key_hash=hash_key(tenant.engine_api_key),
        kind="customer_update",
        customer_id=customer_id,
        batch_json=orjson.dumps({"environment": "production", **batch}).decode(),
    )


async def stored_rows(sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str) -> list[OutboundMessage]:
    """The tenant's messages in `sequence` order."""
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(OutboundMessage).where(OutboundMessage.tenant_id == tenant_id).order_by(OutboundMessage.sequence)
        )
        return list(rows)


class KickRecorder:
    """The writer's `on_stored` callback: the tenant sets of every committed batch."""

    def __init__(self) -> None:
        self.calls: list[set[str]] = []

    def __call__(self, tenant_ids: Collection[str]) -> None:
        self.calls.append(set(tenant_ids))


@asynccontextmanager
async def running_writer(
    engine: AsyncEngine, kicks: KickRecorder | None = None, **limits: int
) -> AsyncIterator[OutboxWriter]:
    writer = OutboxWriter(engine, on_stored=kicks or KickRecorder(), **limits)
    writer.start()
    try:
        yield writer
    finally:
        await writer.stop()


@pytest.fixture
async def tenant(sessionmaker: async_sessionmaker[AsyncSession]) -> TenantFixture:
    return await make_tenant(sessionmaker)


class TestGroupCommit:
    async def test_concurrent_calls_are_stored_in_one_statement_in_arrival_order(
        self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantFixture
    ) -> None:
        kicks = KickRecorder()
        messages = [accepted(tenant, customer_id=f"c-{n % 3}", n=n) for n in range(30)]
        async with running_writer(engine, kicks) as writer:
            results = await asyncio.gather(*(writer.submit(message) for message in messages))
        assert results == [True] * 30
        rows = await stored_rows(sessionmaker, tenant.id)
        assert [row.id for row in rows] == [message.id for message in messages]
        assert {(row.status, row.attempts) for row in rows} == {("queued", 0)}
        assert [row.batch["n"] for row in rows] == list(range(30))
        # One transaction (one now()) for all of them, and one kick for the tenant.
        assert len({row.created_at for row in rows}) == 1
        assert kicks.calls == [{tenant.id}]

    async def test_a_committed_message_is_visible_to_others_when_submit_returns(
        self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantFixture
    ) -> None:
        message = accepted(tenant)
        async with running_writer(engine) as writer:
            assert await writer.submit(message) is True
            assert [row.id for row in await stored_rows(sessionmaker, tenant.id)] == [message.id]

    async def test_batches_are_bounded(
        self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantFixture
    ) -> None:
        kicks = KickRecorder()
        messages = [accepted(tenant, n=n) for n in range(10)]
        async with running_writer(engine, kicks, max_batch_messages=4) as writer:
            assert all(await asyncio.gather(*(writer.submit(message) for message in messages)))
        rows = await stored_rows(sessionmaker, tenant.id)
        assert [row.id for row in rows] == [message.id for message in messages]
        assert len({row.created_at for row in rows}) == 3
        assert len(kicks.calls) == 3


class TestTheStoreChecksTheCaller:
    async def test_a_replaced_key_or_a_disconnected_tenant_is_refused_alone(
        self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantFixture
    ) -> None:
        disconnected = await make_tenant(sessionmaker)
        async with sessionmaker() as session:
            await session.execute(delete(OutboundSettings).where(OutboundSettings.tenant_id == disconnected.id))
            await session.commit()
        good = accepted(tenant)
        wrong_key = dataclasses.replace(accepted(tenant), engine_key_hash=hash_key("lbk_replaced"))
        async with running_writer(engine) as writer:
            results = await asyncio.gather(
                writer.submit(good), writer.submit(wrong_key), writer.submit(accepted(disconnected))
            )
        assert results == [True, False, False]
        assert [row.id for row in await stored_rows(sessionmaker, tenant.id)] == [good.id]
        assert await stored_rows(sessionmaker, disconnected.id) == []


class TestFailures:
    async def test_a_message_postgresql_cannot_store_fails_alone(
        self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantFixture
    ) -> None:
        before, poisoned, after = accepted(tenant, n=1), accepted(tenant, note="a\u0000b"), accepted(tenant, n=2)
        async with running_writer(engine) as writer:
            results = await asyncio.gather(
                writer.submit(before), writer.submit(poisoned), writer.submit(after), return_exceptions=True
            )
        assert results[0] is True and results[2] is True
        assert isinstance(results[1], Unprocessable)
        assert results[1].code == ErrorCode.VALIDATION_FAILED
        assert [row.id for row in await stored_rows(sessionmaker, tenant.id)] == [before.id, after.id]

    async def test_an_unreachable_database_is_a_503_for_the_batch(
        self, settings: Settings, tenant: TenantFixture
    ) -> None:
        unreachable = create_engine(
            settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/none"}),
            application_name="outbox-test-unreachable",
        )
        try:
            async with running_writer(unreachable) as writer:
                results = await asyncio.gather(
                    writer.submit(accepted(tenant)), writer.submit(accepted(tenant)), return_exceptions=True
                )
        finally:
            await unreachable.dispose()
        assert all(isinstance(result, ServiceUnavailable) for result in results)
        assert {result.code for result in results if isinstance(result, ServiceUnavailable)} == {
            ErrorCode.DATABASE_UNAVAILABLE
        }

    async def test_a_lost_connection_fails_one_batch_and_the_next_one_is_stored(
        self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantFixture
    ) -> None:
        name = f"outbox-test-{uuid.uuid4().hex[:8]}"
        own = create_engine(settings, application_name=name, pool_size=2)
        try:
            async with running_writer(own) as writer:
                assert await writer.submit(accepted(tenant, n=1)) is True
                async with sessionmaker() as session:  # the server drops the writer's connection
                    await session.execute(
                        text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
                        {"name": name},
                    )
                with pytest.raises(ServiceUnavailable) as lost:
                    await writer.submit(accepted(tenant, n=2))
                assert lost.value.code == ErrorCode.DATABASE_UNAVAILABLE
                assert await writer.submit(accepted(tenant, n=3)) is True
        finally:
            await own.dispose()
        assert [row.batch["n"] for row in await stored_rows(sessionmaker, tenant.id)] == [1, 3]


class TestBoundsAndShutdown:
    async def test_calls_beyond_the_waiting_line_are_refused_at_once(
        self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantFixture
    ) -> None:
        messages = [accepted(tenant, n=n) for n in range(3)]
        async with running_writer(engine, max_waiting_messages=2) as writer:
            results = await asyncio.gather(*(writer.submit(m) for m in messages), return_exceptions=True)
        assert results[:2] == [True, True]
        assert isinstance(results[2], ServiceUnavailable)
        assert [row.id for row in await stored_rows(sessionmaker, tenant.id)] == [m.id for m in messages[:2]]

    async def test_a_call_whose_client_gave_up_is_not_stored(
        self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantFixture
    ) -> None:
        abandoned, kept = accepted(tenant, n=1), accepted(tenant, n=2)
        async with running_writer(engine) as writer:
            call = asyncio.create_task(writer.submit(abandoned))
            await asyncio.sleep(0)  # queued, not written yet
            call.cancel()
            assert await writer.submit(kept) is True
        assert call.cancelled()
        assert [row.id for row in await stored_rows(sessionmaker, tenant.id)] == [kept.id]

    async def test_stop_stores_what_is_waiting_then_refuses(
        self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantFixture
    ) -> None:
        writer = OutboxWriter(engine, on_stored=KickRecorder())
        writer.start()
        calls = [asyncio.create_task(writer.submit(accepted(tenant, n=n))) for n in range(5)]
        await asyncio.sleep(0)
        await writer.stop()
        assert [call.result() for call in calls] == [True] * 5
        with pytest.raises(ServiceUnavailable):
            await writer.submit(accepted(tenant))
        assert len(await stored_rows(sessionmaker, tenant.id)) == 5


async def test_the_statistics_guard_leaves_the_planner_statistics_in_place(
    engine: AsyncEngine, tenant: TenantFixture
) -> None:
    async with running_writer(engine) as writer:
        assert await writer.submit(accepted(tenant)) is True
    await PlannerStatisticsGuard(engine).check()
    async with engine.connect() as connection:
        assert await AcceptedMessageStore(connection).has_planner_statistics() is True
