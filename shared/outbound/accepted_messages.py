"""The outbound API's side of the outbox: accepted calls stored by the proxy's OutboxWriter.

Separate from OutboundMessageRepository (delivery and administration) because it runs on the
writer's own autocommit connection, at the asyncpg level (see AcceptedMessageStore).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.vocabulary import OutboundKind, OutboundStatus


@dataclass(frozen=True)
class AcceptedMessage:
    """An outbound call accepted by the API, on its way into the outbox.

    It is stored only if, when the row is written, `engine_key_hash` is still its tenant's engine
    key and the tenant is still connected: the API authenticates from a cache, the store is exact.
    """

    id: uuid.UUID
    tenant_id: str
    engine_key_hash: str
    kind: OutboundKind
    customer_id: str
    batch_json: str

    @property
    def size_bytes(self) -> int:
        return len(self.batch_json)


# One row per accepted call, in the order given (WITH ORDINALITY + ORDER BY: identity values are
# drawn in that order), checked against the tenant's current engine key and connection. Arrays
# rather than VALUES lists: one statement text (prepared once) for every batch size.
_INSERT_ACCEPTED_SQL = """
INSERT INTO outbound_message (id, tenant_id, kind, customer_id, status, batch, attempts, next_attempt_at)
SELECT m.id, m.tenant_id, m.kind, m.customer_id, $8::varchar, m.batch::jsonb, 0, $7
FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[], $6::text[])
    WITH ORDINALITY AS m(id, tenant_id, key_hash, kind, customer_id, batch, position)
JOIN tenant ON tenant.id = m.tenant_id AND tenant.engine_key_hash = m.key_hash
WHERE EXISTS (SELECT 1 FROM outbound_settings WHERE outbound_settings.tenant_id = m.tenant_id)
ORDER BY m.position
RETURNING id
"""


class AcceptedMessageStore:
    """The outbound API's insert, on the outbox writer's own connection in autocommit mode: the one
    statement is its own transaction, committed when PostgreSQL answers (see proxy/outbound/outbox_writer.py).

    It runs on the asyncpg connection underneath SQLAlchemy's: this statement is the outbound API's
    whole database cost, and SQLAlchemy's execution layer doubled its client CPU at typical batch
    sizes (36 vs 17 us per message at 15 per batch). Errors are therefore asyncpg's own.
    """

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, messages: Sequence[AcceptedMessage], now: datetime) -> set[uuid.UUID]:
        """Store `messages` as `queued`, due `now`, in one statement; their `sequence` follows the
        order given. A message whose key no longer belongs to its tenant, or whose tenant is gone
        or disconnected, is left out. The ids stored."""
        if not messages:
            return set()
        driver = (await self._connection.get_raw_connection()).driver_connection
        if driver is None:
            raise RuntimeError("the outbox connection has no driver connection (closed?)")
        rows = await driver.fetch(
            _INSERT_ACCEPTED_SQL,
            [m.id for m in messages],
            [m.tenant_id for m in messages],
            [m.engine_key_hash for m in messages],
            [m.kind for m in messages],
            [m.customer_id for m in messages],
            [m.batch_json for m in messages],
            now,
            OutboundStatus.QUEUED.value,
        )
        return {row[0] for row in rows}

    async def has_planner_statistics(self) -> bool:
        """Whether ANALYZE has run on outbound_message since it had rows (customer_id has stats)."""
        found = await self._connection.scalar(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_stats WHERE schemaname = current_schema()"
                " AND tablename = 'outbound_message' AND attname = 'customer_id')"
            )
        )
        return bool(found)

    async def analyze(self) -> None:
        """Collect the planner's statistics of outbound_message now (see OutboxWriter)."""
        await self._connection.execute(text("ANALYZE outbound_message"))
