"""Loyalty customers and their ledger, scoped to one tenant. Nothing here commits.

Statements go through the Core tables and return plain records: the worker runs them for every
Firehose request, and loading ORM entities costs about twice the CPU of a Core row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar, cast

import orjson
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ARRAY, Boolean, DateTime, Table, Text, bindparam, exists, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import TypeEngine

from shared.mapping.inbound import KnownCustomer, NewCustomer, ProfileChange
from shared.models import Customer, LedgerEvent, Tenant
from shared.vocabulary import CustomerStatus

RowT = TypeVar("RowT")

_customer = cast(Table, Customer.__table__)
_ledger = cast(Table, LedgerEvent.__table__)


@dataclass(frozen=True)
class CustomerRecord(KnownCustomer):
    """A stored customer: its id and status (all the mapping decides on), attributes and timestamps."""

    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class LedgerRecord(BaseModel):
    """A stored ledger entry as the admin API lists it (its schema builds on this one)."""

    model_config = ConfigDict(frozen=True)

    id: int
    action: str
    data: dict[str, Any]
    source: str
    request_id: str | None
    source_event_id: str | None
    occurred_at: datetime
    recorded_at: datetime


# The columns a record is read from, in its field order.
_CUSTOMER_COLUMNS = tuple(_customer.c[field.name] for field in fields(CustomerRecord))
_LEDGER_COLUMNS = tuple(_ledger.c[name] for name in LedgerRecord.model_fields)


def _customer_record(row: Any) -> CustomerRecord:
    return CustomerRecord(row.id, row.status, row.attributes, row.created_at, row.updated_at)


class NewLedgerEntry(NamedTuple):
    """A ledger row to append for one customer (shared.mapping.inbound.LedgerDraft is one too)."""

    action: str
    data: dict[str, Any]
    source_event_id: str | None
    dedupe_key: str
    occurred_at: datetime


class LedgerEntryFields(Protocol):
    """What a ledger row needs of an entry (NewLedgerEntry, LedgerDraft)."""

    @property
    def action(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def source_event_id(self) -> str | None: ...
    @property
    def dedupe_key(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...


class NewLedgerRow(NamedTuple):
    """A ledger row of any customer of any tenant."""

    tenant_id: str
    customer_id: str
    request_id: str | None
    entry: LedgerEntryFields


# Each statement below handles any number of rows through unnest() over parallel arrays, so a
# batch costs one round trip whatever its size.
_SCALAR_PARAMETERS = frozenset({"source", "active"})


def _arrays(statement: str, *timestamps: str, booleans: tuple[str, ...] = ()) -> TextClause:
    """A text statement whose parameters are arrays (text unless named as timestamps/booleans)."""
    params = []
    for name in dict.fromkeys(re.findall(r"(?<!:):(\w+)", statement)):
        if name in _SCALAR_PARAMETERS:
            continue
        element: TypeEngine[Any] = Text()
        if name in timestamps:
            element = DateTime(timezone=True)
        elif name in booleans:
            element = Boolean()
        params.append(bindparam(name, type_=ARRAY(element)))
    return text(statement).bindparams(*params)


# Rows whose dedupe key is already recorded are skipped; the keys actually inserted come back.
_APPEND_LEDGER_SQL = _arrays(
    """
    INSERT INTO ledger_event
        (tenant_id, customer_id, action, data, source, request_id, source_event_id, dedupe_key, occurred_at)
    SELECT entry.tenant_id, entry.customer_id, entry.action, entry.data::jsonb, :source, entry.request_id,
           entry.source_event_id, entry.dedupe_key, entry.occurred_at
    FROM unnest(:tenant_ids, :customer_ids, :actions, :data, :request_ids, :source_event_ids, :dedupe_keys,
                :occurred_ats)
         WITH ORDINALITY AS entry(tenant_id, customer_id, action, data, request_id, source_event_id, dedupe_key,
                                  occurred_at, position)
    ORDER BY entry.position
    ON CONFLICT (tenant_id, dedupe_key) DO NOTHING
    RETURNING tenant_id, dedupe_key
    """,
    "occurred_ats",
)
_FIND_BY_IDS_SQL = _arrays(
    """
    SELECT c.tenant_id, c.id, c.status, c.attributes, c.created_at, c.updated_at
    FROM unnest(:tenant_ids, :ids) AS k(tenant_id, id)
    JOIN customer c ON c.tenant_id = k.tenant_id AND c.id = k.id
    """
)
# A nested loop over the GIN index on attributes: one containment probe per identifier.
_FIND_BY_ATTRIBUTES_SQL = _arrays(
    """
    SELECT DISTINCT ON (k.position) k.position, c.id, c.status, c.attributes, c.created_at, c.updated_at
    FROM unnest(:tenant_ids, :fields, :values) WITH ORDINALITY AS k(tenant_id, field, value, position)
    JOIN customer c ON c.tenant_id = k.tenant_id AND c.attributes @> jsonb_build_object(k.field, k.value)
    ORDER BY k.position, c.created_at, c.id
    """
)
_CREATE_CUSTOMERS_SQL = _arrays(
    """
    INSERT INTO customer (tenant_id, id, status, attributes)
    SELECT k.tenant_id, k.id, k.status, k.attributes::jsonb
    FROM unnest(:tenant_ids, :ids, :statuses, :attributes) WITH ORDINALITY AS k(tenant_id, id, status, attributes, n)
    ORDER BY k.n
    ON CONFLICT (tenant_id, id) DO NOTHING
    """
)
_PROFILE_CHANGES_SQL = _arrays(
    """
    UPDATE customer AS c
    SET attributes = c.attributes || v.attributes::jsonb,
        status = CASE WHEN v.activate THEN :active ELSE c.status END,
        updated_at = now()
    FROM unnest(:tenant_ids, :ids, :attributes, :activate) AS v(tenant_id, id, attributes, activate)
    WHERE c.tenant_id = v.tenant_id AND c.id = v.id
    """,
    booleans=("activate",),
).bindparams(active=CustomerStatus.ACTIVE.value)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def append_ledger_rows(
    session: AsyncSession, rows: Sequence[NewLedgerRow], *, source: str
) -> set[tuple[str, str]]:
    """Append ledger rows in order with one statement; returns the (tenant_id, dedupe_key) of the
    rows actually inserted (rows already recorded are skipped)."""
    if not rows:
        return set()
    result = await session.execute(
        _APPEND_LEDGER_SQL,
        {
            "source": source,
            "tenant_ids": [row.tenant_id for row in rows],
            "customer_ids": [row.customer_id for row in rows],
            "actions": [row.entry.action for row in rows],
            "data": [_json(row.entry.data) for row in rows],
            "request_ids": [row.request_id for row in rows],
            "source_event_ids": [row.entry.source_event_id for row in rows],
            "dedupe_keys": [row.entry.dedupe_key for row in rows],
            "occurred_ats": [row.entry.occurred_at for row in rows],
        },
    )
    return {(row[0], row[1]) for row in result}


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
        query = select(*_LEDGER_COLUMNS).where(
            _ledger.c.tenant_id == self.tenant_id, _ledger.c.customer_id == customer_id
        )
        if after_id is not None:
            query = query.where(_ledger.c.id > after_id)
        rows = await self.session.execute(query.order_by(_ledger.c.id).limit(limit))
        return [LedgerRecord(**row) for row in rows.mappings()]


class CustomerBatchRepository:
    """Customers of many requests, of any tenants, in one statement per step (the worker's batches).
    Every row carries its tenant_id and every join matches on it."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find_by_ids(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CustomerRecord]:
        """Customers by (tenant_id, id)."""
        if not keys:
            return {}
        rows = await self.session.execute(
            _FIND_BY_IDS_SQL, {"tenant_ids": [key[0] for key in keys], "ids": [key[1] for key in keys]}
        )
        return {(row.tenant_id, row.id): _customer_record(row) for row in rows}

    async def find_by_attributes(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], CustomerRecord]:
        """Customers by (tenant_id, attribute, value): the oldest one when several match."""
        if not keys:
            return {}
        rows = await self.session.execute(
            _FIND_BY_ATTRIBUTES_SQL,
            {
                "tenant_ids": [key[0] for key in keys],
                "fields": [key[1] for key in keys],
                "values": [key[2] for key in keys],
            },
        )
        return {keys[row.position - 1]: _customer_record(row) for row in rows}

    async def create_if_absent(self, customers: Sequence[NewCustomer]) -> None:
        """Insert customers whose (tenant_id, id) does not exist yet; others are left as they are."""
        await self._execute_in_lock_order(
            _CREATE_CUSTOMERS_SQL,
            [(customer.tenant_id, customer.id, customer) for customer in customers],
            {
                "statuses": lambda customer: customer.status,
                "attributes": lambda customer: _json(customer.attributes),
            },
        )

    async def apply_profile_changes(self, changes: Sequence[ProfileChange]) -> None:
        """Merge attributes into, and activate, many customers (one change per customer)."""
        await self._execute_in_lock_order(
            _PROFILE_CHANGES_SQL,
            [(change.tenant_id, change.customer_id, change) for change in changes],
            {"attributes": lambda change: _json(change.attributes), "activate": lambda change: change.activate},
        )

    async def _execute_in_lock_order(
        self,
        statement: TextClause,
        rows: Sequence[tuple[str, str, RowT]],
        arrays: Mapping[str, Callable[[RowT], Any]],
    ) -> None:
        """Run an array statement over (tenant_id, customer id, row) rows sorted by customer, so that
        concurrent batches lock customers in one order (no deadlock): `tenant_ids` and `ids` plus
        one array per entry of `arrays`."""
        if not rows:
            return
        ordered = sorted(rows, key=lambda row: (row[0], row[1]))
        parameters = {"tenant_ids": [row[0] for row in ordered], "ids": [row[1] for row in ordered]}
        for name, value_of in arrays.items():
            parameters[name] = [value_of(row[2]) for row in ordered]
        await self.session.execute(statement, parameters)
