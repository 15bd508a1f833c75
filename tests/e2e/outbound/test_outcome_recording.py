"""An outcome mParticle gave is recorded, not earned again: when PostgreSQL refuses the first write
of a delivery's outcome (the worker's connection terminated, or a serialization failure), the
worker keeps the outcome and writes it again; the batch reaches the S2S server exactly once.

The refusal is real: a trigger on outbound_attempt, armed for one message, fails the first insert
for it (a sequence counts the inserts: sequences are not rolled back with the failed transaction).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.e2e.outbound.helpers import load_attempts, load_message, make_s2s_tenant, post_ok
from tests.fakes.s2s_server import FakeS2SServer
from worker.outbound.service import OutboundDelivery

# How the first write of the outcome is refused.
FAULTS = {
    # The backend serving the worker's session ends itself: the worker sees its connection die.
    "connection terminated": "PERFORM pg_terminate_backend(pg_backend_pid());",
    # A serialization failure, as under concurrent transactions.
    "serialization failure": "RAISE EXCEPTION 'injected' USING ERRCODE = '40001';",
}


class OutcomeWriteFault:
    """Fails the first insert into outbound_attempt for one message (and only that one)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], action: str) -> None:
        self._sessionmaker = sessionmaker
        self._action = action
        suffix = uuid.uuid4().hex[:12]
        self.sequence = f"outcome_fault_seq_{suffix}"
        self.function = f"outcome_fault_fn_{suffix}"
        self.trigger = f"outcome_fault_tr_{suffix}"

    async def arm(self, message_id: uuid.UUID) -> None:
        async with self._sessionmaker() as session:
            await session.execute(text(f"CREATE SEQUENCE {self.sequence}"))
            await session.execute(
                text(
                    f"""
                    CREATE FUNCTION {self.function}() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                        IF NEW.message_id = '{message_id}' AND nextval('{self.sequence}') = 1 THEN
                            {self._action}
                        END IF;
                        RETURN NEW;
                    END $$
                    """
                )
            )
            await session.execute(
                text(
                    f"CREATE TRIGGER {self.trigger} BEFORE INSERT ON outbound_attempt "
                    f"FOR EACH ROW EXECUTE FUNCTION {self.function}()"
                )
            )
            await session.commit()

    async def inserts_seen(self) -> int:
        """How many inserts for the message reached the trigger (the first one was refused)."""
        async with self._sessionmaker() as session:
            # The name is generated above, never input.
            query = text(f"SELECT last_value, is_called FROM {self.sequence}")  # noqa: S608
            row = (await session.execute(query)).one()
            return int(row.last_value) if row.is_called else 0

    async def disarm(self) -> None:
        async with self._sessionmaker() as session:
            await session.execute(text(f"DROP TRIGGER IF EXISTS {self.trigger} ON outbound_attempt"))
            await session.execute(text(f"DROP FUNCTION IF EXISTS {self.function}()"))
            await session.execute(text(f"DROP SEQUENCE IF EXISTS {self.sequence}"))
            await session.commit()


@pytest.fixture(params=sorted(FAULTS))
async def fault(
    request: pytest.FixtureRequest, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[OutcomeWriteFault]:
    injected = OutcomeWriteFault(sessionmaker, FAULTS[request.param])
    try:
        yield injected
    finally:
        await injected.disarm()


async def test_a_refused_outcome_write_is_retried_not_resent(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    fake_s2s: FakeS2SServer,
    delivery: OutboundDelivery,
    fault: OutcomeWriteFault,
) -> None:
    tenant = await make_s2s_tenant(sessionmaker, fake_s2s)
    message_id = await post_ok(client, tenant, "customer-updates", {"customer": {"id": "c-1"}})
    await fault.arm(message_id)

    run = await delivery.deliver_tenant(tenant.id)

    assert await fault.inserts_seen() >= 2  # the first write was refused, a later one went through
    assert run.delivered == 1
    message = await load_message(sessionmaker, message_id)
    assert (message.status, message.attempts, message.last_status_code) == ("delivered", 1, 202)
    assert [a.status_code for a in await load_attempts(sessionmaker, message_id)] == [202]
    # mParticle got the batch exactly once, and nothing is left to send.
    assert len(fake_s2s.requests(tenant.api_key)) == 1
    assert [a.batch for a in fake_s2s.accepted(tenant.api_key)] == [message.batch]
    assert (await delivery.deliver_tenant(tenant.id)).delivered == 0
    assert len(fake_s2s.requests(tenant.api_key)) == 1
