"""Customer resolution for a whole batch (event senders and audience members alike): every sender
is looked up in one statement per identifier kind, the rules decide in queue order who is used,
created or rejected (shared.mapping.inbound.decide_customers), and the new customers are created
in one statement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.inbound.customers import CustomerBatchRepository
from shared.mapping.inbound import (
    CUSTOMER_ID_FIELD,
    CustomerKey,
    CustomerNeed,
    KnownCustomer,
    SenderKey,
    decide_customers,
)


@dataclass(frozen=True)
class ResolvedCustomers:
    """Per need (same order): the customer id, or None (unknown and not creatable); and the
    status of every customer involved, as it is before this batch's changes."""

    customer_ids: list[str | None]
    statuses: dict[CustomerKey, str]


async def find_senders(
    customers: CustomerBatchRepository, senders: Sequence[SenderKey]
) -> dict[SenderKey, KnownCustomer]:
    """The existing customers of `senders`: by id, or by attribute (the oldest match)."""
    unique = list(dict.fromkeys(senders))
    found: dict[SenderKey, KnownCustomer] = {}
    by_id = [(tenant_id, value) for tenant_id, field_name, value in unique if field_name == CUSTOMER_ID_FIELD]
    for (tenant_id, customer_id), record in (await customers.find_by_ids(by_id)).items():
        found[(tenant_id, CUSTOMER_ID_FIELD, customer_id)] = record
    by_attribute = [sender for sender in unique if sender[1] != CUSTOMER_ID_FIELD]
    found.update(await customers.find_by_attributes(by_attribute))
    return found


async def resolve_customers(customers: CustomerBatchRepository, needs: Sequence[CustomerNeed]) -> ResolvedCustomers:
    """Resolve every need, creating the customers the rules allow (CONTRACT §3)."""
    if not needs:
        return ResolvedCustomers([], {})
    found = await find_senders(customers, [need.sender for need in needs])
    decisions = decide_customers(needs, found)
    statuses = {(sender[0], known.id): known.status for sender, known in found.items()}
    if decisions.to_create:
        statuses.update({(new.tenant_id, new.id): new.status for new in decisions.to_create})
        # Another worker may have created some of them first: what is stored wins.
        await customers.create_if_absent(decisions.to_create)
        stored = await customers.find_by_ids([(new.tenant_id, new.id) for new in decisions.to_create])
        statuses.update({key: record.status for key, record in stored.items()})
    return ResolvedCustomers(decisions.customer_ids, statuses)
