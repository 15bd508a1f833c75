"""Loyalty customers and their ledger, scoped to one tenant. Nothing here commits.

Statements go through the Core tables and return plain records: the worker runs them for every
Firehose request, and loading ORM entities costs about twice the CPU of a Core row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import ARRAY, DateTime, Table, Text, bindparam, exists, or_, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Customer, LedgerEvent, Tenant

CUSTOMER_ID_FIELD = "id"
_customer = cast(Table, Customer.__table__)
_ledger = cast(Table, LedgerEvent.__table__)


@dataclass(frozen=True)
class CustomerRecord:
    id: str
    status: str
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class LedgerRecord:
    id: int
    action: str
    data: dict[str, Any]
    source: str
    request_id: str | None
    source_event_id: str | None
    occurred_at: datetime
    recorded_at: datetime


_CUSTOMER_COLUMNS = (
    _customer.c.id,
    _customer.c.status,
    _customer.c.attributes,
    _customer.c.created_at,
    _customer.c.updated_at,
)


def _customer_record(row: Any) -> CustomerRecord:
    return CustomerRecord(row.id, row.status, row.attributes, row.created_at, row.updated_at)


@dataclass(frozen=True)
class NewLedgerEntry:
    """A ledger row to append for one customer."""

    action: str
    data: dict[str, Any]
    source_event_id: str | None
    dedupe_key: str
    occurred_at: datetime


# One statement whatever the number of rows (unnest of parallel arrays, in the given order); rows
# whose dedupe key is already recorded are skipped, and the keys actually inserted come back.
_APPEND_LEDGER_SQL = text(
    """
    INSERT INTO ledger_event
        (tenant_id, customer_id, action, data, source, request_id, source_event_id, dedupe_key, occurred_at)
    SELECT :tenant_id, :customer_id, entry.action, entry.data::jsonb, :source, :request_id,
           entry.source_event_id, entry.dedupe_key, entry.occurred_at
    FROM unnest(:actions, :data, :source_event_ids, :dedupe_keys, :occurred_ats)
         WITH ORDINALITY AS entry(action, data, source_event_id, dedupe_key, occurred_at, position)
    ORDER BY entry.position
    ON CONFLICT (tenant_id, dedupe_key) DO NOTHING
    RETURNING dedupe_key
    """
).bindparams(
    bindparam("actions", type_=ARRAY(Text)),
    bindparam("data", type_=ARRAY(Text)),
    bindparam("source_event_ids", type_=ARRAY(Text)),
    bindparam("dedupe_keys", type_=ARRAY(Text)),
    bindparam("occurred_ats", type_=ARRAY(DateTime(timezone=True))),
)


def _typed_alternatives(value: str) -> list[Any]:
    """A query value as text, plus the JSON scalar it spells (`42`, `true`), so attributes stored
    as numbers or booleans are found too."""
    alternatives: list[Any] = [value]
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return alternatives
    if isinstance(parsed, int | float | bool) or parsed is None:
        alternatives.append(parsed)
    return alternatives


class CustomerRepository:
    """Customers and ledger entries of one tenant."""

    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    async def tenant_exists(self) -> bool:
        """Whether the tenant these customers belong to exists (admin routes answer 404 otherwise)."""
        return bool(await self.session.scalar(select(exists().where(Tenant.id == self.tenant_id))))

    def _mine(self) -> Any:
        return _customer.c.tenant_id == self.tenant_id

    async def get(self, customer_id: str) -> CustomerRecord | None:
        row = (
            await self.session.execute(select(*_CUSTOMER_COLUMNS).where(self._mine(), _customer.c.id == customer_id))
        ).first()
        return _customer_record(row) if row else None

    async def find_by_identifier(self, loyalty_identifier_field: str, value: str) -> CustomerRecord | None:
        """The customer whose identifier field (`id`, or an attribute) equals `value`; the oldest one
        when several share an attribute value."""
        if loyalty_identifier_field == CUSTOMER_ID_FIELD:
            return await self.get(value)
        row = (
            await self.session.execute(
                select(*_CUSTOMER_COLUMNS)
                .where(self._mine(), _customer.c.attributes.contains({loyalty_identifier_field: value}))
                .order_by(_customer.c.created_at, _customer.c.id)
                .limit(1)
            )
        ).first()
        return _customer_record(row) if row else None

    async def create_if_absent(self, customer_id: str, status: str, attributes: dict[str, Any]) -> CustomerRecord:
        """Insert the customer unless its id exists (a concurrent job may have just created it);
        either way return the stored row."""
        row = (
            await self.session.execute(
                insert(_customer)
                .values(tenant_id=self.tenant_id, id=customer_id, status=status, attributes=attributes)
                .on_conflict_do_nothing(index_elements=[_customer.c.tenant_id, _customer.c.id])
                .returning(*_CUSTOMER_COLUMNS)
            )
        ).first()
        if row is not None:
            return _customer_record(row)
        existing = await self.get(customer_id)
        if existing is None:  # deleted between the two statements: practically never
            raise LookupError(f"customer {customer_id} vanished while being created")
        return existing

    async def append_ledger_entries(
        self, customer_id: str, entries: Sequence[NewLedgerEntry], *, request_id: str | None, source: str
    ) -> set[str]:
        """Append entries in order with one statement; returns the dedupe keys actually inserted
        (entries already recorded are skipped)."""
        if not entries:
            return set()
        result = await self.session.execute(
            _APPEND_LEDGER_SQL,
            {
                "tenant_id": self.tenant_id,
                "customer_id": customer_id,
                "source": source,
                "request_id": request_id,
                "actions": [entry.action for entry in entries],
                "data": [orjson.dumps(entry.data).decode() for entry in entries],
                "source_event_ids": [entry.source_event_id for entry in entries],
                "dedupe_keys": [entry.dedupe_key for entry in entries],
                "occurred_ats": [entry.occurred_at for entry in entries],
            },
        )
        return {row[0] for row in result}

    async def apply_profile_changes(self, customer_id: str, attributes: dict[str, Any], *, activate: bool) -> None:
        """Merge `attributes` into the customer's (top-level keys replaced) and activate it if asked."""
        values: dict[str, Any] = {}
        if attributes:
            values["attributes"] = _customer.c.attributes.op("||")(bindparam("merged", attributes, type_=JSONB))
        if activate:
            values["status"] = "active"
        if values:
            await self.session.execute(
                update(_customer).where(self._mine(), _customer.c.id == customer_id).values(values)
            )

    async def erase_attributes(self, customer_id: str) -> None:
        """Forget a customer's attributes (data subject erasure); the write-once ledger stays."""
        await self.session.execute(
            update(_customer).where(self._mine(), _customer.c.id == customer_id).values(attributes={})
        )

    async def page(
        self,
        *,
        limit: int,
        after_id: str | None = None,
        status: str | None = None,
        attribute: tuple[str, str] | None = None,
    ) -> list[CustomerRecord]:
        """Customers in id order, after `after_id`, optionally by status and by an attribute value."""
        query = select(*_CUSTOMER_COLUMNS).where(self._mine())
        if after_id is not None:
            query = query.where(_customer.c.id > after_id)
        if status is not None:
            query = query.where(_customer.c.status == status)
        if attribute is not None:
            name, value = attribute
            query = query.where(
                or_(*(_customer.c.attributes.contains({name: candidate}) for candidate in _typed_alternatives(value)))
            )
        rows = await self.session.execute(query.order_by(_customer.c.id).limit(limit))
        return [_customer_record(row) for row in rows]

    async def ledger_page(self, customer_id: str, *, limit: int, after_id: int | None = None) -> list[LedgerRecord]:
        """A customer's ledger in recorded order."""
        query = select(
            _ledger.c.id,
            _ledger.c.action,
            _ledger.c.data,
            _ledger.c.source,
            _ledger.c.request_id,
            _ledger.c.source_event_id,
            _ledger.c.occurred_at,
            _ledger.c.recorded_at,
        ).where(_ledger.c.tenant_id == self.tenant_id, _ledger.c.customer_id == customer_id)
        if after_id is not None:
            query = query.where(_ledger.c.id > after_id)
        rows = await self.session.execute(query.order_by(_ledger.c.id).limit(limit))
        return [LedgerRecord(*row) for row in rows]
