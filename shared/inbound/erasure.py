"""Data subject erasure of one customer (CONTRACT §8), and the record of data subject requests.
Nothing here commits.

What an erasure removes:
- the customer's attributes (the row stays, with its id and status: the ledger refers to it);
- its list memberships;
- the `data` of its ledger entries (the write-once ledger keeps action, ids and timestamps: the
  trigger allows clearing `data` and nothing else);
- the stored payload of every incoming error log entry that concerns it: entries whose request id
  is the request id of one of its ledger entries, and entries whose payload contains one of its
  identifier values or its id as a JSON string (`"jane@example.com"`);
- the S2S batches of its outbound messages (shared.outbound.messages.erase_customer_batches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import orjson
from sqlalchemy import ARRAY, CursorResult, Text, bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Customer, DataSubjectRequest, LedgerEvent, ListMember
from shared.outbound.messages import erase_customer_batches

_ERASE_ERROR_PAYLOADS_SQL = text(
    """
    UPDATE incoming_error SET payload = NULL
    WHERE tenant_id = :tenant_id AND payload IS NOT NULL
      AND (request_id = ANY(:request_ids)
           OR EXISTS (SELECT 1 FROM unnest(CAST(:needles AS text[])) AS needle
                      WHERE strpos(payload::text, needle) > 0))
    """
).bindparams(bindparam("request_ids", type_=ARRAY(Text)), bindparam("needles", type_=ARRAY(Text)))


@dataclass(frozen=True)
class ErasureCounts:
    """What an erasure removed, by kind."""

    attributes: int
    list_memberships: int
    ledger_entries_anonymised: int
    error_log_payloads: int
    outbound_batches: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


async def erase_customer(
    session: AsyncSession, tenant_id: str, customer_id: str, identifier_values: Sequence[str]
) -> ErasureCounts:
    """Erase the customer's personal data (see the module docstring); counts of what was removed."""
    attributes = await session.scalar(
        select(func.count())
        .select_from(Customer)
        .join(func.jsonb_object_keys(Customer.attributes).table_valued("key"), text("true"))
        .where(Customer.tenant_id == tenant_id, Customer.id == customer_id)
    )
    await session.execute(
        update(Customer)
        .where(Customer.tenant_id == tenant_id, Customer.id == customer_id)
        .values(attributes={}, updated_at=func.now())
    )
    memberships = await session.execute(
        delete(ListMember)
        .where(ListMember.tenant_id == tenant_id, ListMember.customer_id == customer_id)
        .execution_options(synchronize_session=False)
    )
    request_ids = list(
        await session.scalars(
            select(LedgerEvent.request_id)
            .where(
                LedgerEvent.tenant_id == tenant_id,
                LedgerEvent.customer_id == customer_id,
                LedgerEvent.request_id.is_not(None),
            )
            .distinct()
        )
    )
    ledger = await session.execute(
        update(LedgerEvent)
        .where(LedgerEvent.tenant_id == tenant_id, LedgerEvent.customer_id == customer_id, LedgerEvent.data != {})
        .values(data={})
        .execution_options(synchronize_session=False)
    )
    needles = [orjson.dumps(value).decode() for value in dict.fromkeys([customer_id, *identifier_values]) if value]
    payloads = await session.execute(
        _ERASE_ERROR_PAYLOADS_SQL, {"tenant_id": tenant_id, "request_ids": request_ids, "needles": needles}
    )
    return ErasureCounts(
        attributes=int(attributes or 0),
        list_memberships=_rowcount(memberships),
        ledger_entries_anonymised=_rowcount(ledger),
        error_log_payloads=_rowcount(payloads),
        outbound_batches=await erase_customer_batches(session, tenant_id, customer_id),
    )


@dataclass(frozen=True)
class DataSubjectRecord:
    """One data subject request as operators read it."""

    id: int
    request_id: str
    subject_request_id: str | None
    request_type: str
    regulation: str | None
    requested_by: str
    outcome: str
    customer_id: str | None
    removed: dict[str, Any]
    recorded_at: Any


async def record_data_subject_request(session: AsyncSession, **values: Any) -> None:
    """Add one data_subject_request row (columns as keyword arguments)."""
    session.add(DataSubjectRequest(**values))
    await session.flush()


async def data_subject_requests_page(
    session: AsyncSession, tenant_id: str, *, limit: int, after_id: int | None = None
) -> list[DataSubjectRecord]:
    """The tenant's data subject requests, newest first, after `after_id` (keyset on id)."""
    query = select(DataSubjectRequest).where(DataSubjectRequest.tenant_id == tenant_id)
    if after_id is not None:
        query = query.where(DataSubjectRequest.id < after_id)
    rows = await session.scalars(query.order_by(DataSubjectRequest.id.desc()).limit(limit))
    return [
        DataSubjectRecord(
            row.id,
            row.request_id,
            row.subject_request_id,
            row.request_type,
            row.regulation,
            row.requested_by,
            row.outcome,
            row.customer_id,
            dict(row.removed),
            row.recorded_at,
        )
        for row in rows
    ]
