"""Admin routes of loyalty records (CONTRACT §5): customers and their ledger, customer lists and
their members. The admin key is checked by the parent router; every query is scoped by tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from proxy.admin.records.schemas import (
    CustomerListRead,
    CustomerListUpdate,
    CustomerRead,
    CustomerStatus,
    LedgerEventRead,
    ListMemberRead,
)
from proxy.dependencies import SessionDep
from proxy.pagination import DEFAULT_PAGE_LIMIT, CursorQuery, LimitQuery, Page, cursor_position, page_of
from shared.errors import NotFound, Unprocessable
from shared.inbound.customer_lists import CustomerListRepository, ListSummary
from shared.inbound.customers import CustomerRepository

router = APIRouter(tags=["records"])

MAX_BIGINT = 2**63 - 1


async def tenant_customers(tenant_id: str, session: SessionDep) -> CustomerRepository:
    customers = CustomerRepository(session, tenant_id)
    if not await customers.tenant_exists():
        raise NotFound("tenant not found")
    return customers


async def tenant_lists(customers: Annotated[CustomerRepository, Depends(tenant_customers)]) -> CustomerListRepository:
    return CustomerListRepository(customers.session, customers.tenant_id)


Customers = Annotated[CustomerRepository, Depends(tenant_customers)]
Lists = Annotated[CustomerListRepository, Depends(tenant_lists)]


def _list_id(raw: str) -> int:
    """Malformed list ids are unknown ones (404), like every other resource id."""
    if not raw.isdigit() or not 0 < int(raw) <= MAX_BIGINT:
        raise NotFound("list not found")
    return int(raw)


def _list_read(summary: ListSummary) -> CustomerListRead:
    customer_list = summary.list
    return CustomerListRead(
        id=customer_list.id,
        name=customer_list.name,
        status=customer_list.status,
        audience_id=customer_list.audience_id,
        member_count=summary.member_count,
    )


@router.get("/tenants/{tenant_id}/customers", summary="Customers, optionally by attribute value and status")
async def list_customers(
    customers: Customers,
    attribute: Annotated[str | None, Query(description="attribute NAME to filter on (with `value`)")] = None,
    value: Annotated[
        str | None, Query(description="the attribute's VALUE (text, or the number/boolean it spells)")
    ] = None,
    status: Annotated[CustomerStatus | None, Query()] = None,
    limit: LimitQuery = DEFAULT_PAGE_LIMIT,
    cursor: CursorQuery = None,
) -> Page[CustomerRead]:
    if (attribute is None) != (value is None):
        raise Unprocessable("`attribute` and `value` go together")
    rows = await customers.page(
        limit=limit + 1,
        after_id=cursor_position(cursor, str),
        status=status,
        attribute=(attribute, value) if attribute is not None and value is not None else None,
    )
    return page_of(rows, limit, CustomerRead.model_validate, lambda customer: customer.id)


@router.get("/tenants/{tenant_id}/customers/{customer_id}", summary="One customer")
async def get_customer(customer_id: str, customers: Customers) -> CustomerRead:
    customer = await customers.get(customer_id)
    if customer is None:
        raise NotFound("customer not found")
    return CustomerRead.model_validate(customer)


@router.get("/tenants/{tenant_id}/customers/{customer_id}/events", summary="A customer's ledger in recorded order")
async def list_customer_events(
    customer_id: str, customers: Customers, limit: LimitQuery = DEFAULT_PAGE_LIMIT, cursor: CursorQuery = None
) -> Page[LedgerEventRead]:
    if await customers.get(customer_id) is None:
        raise NotFound("customer not found")
    rows = await customers.ledger_page(customer_id, limit=limit + 1, after_id=cursor_position(cursor, int))
    return page_of(rows, limit, LedgerEventRead.model_validate, lambda event: event.id)


@router.get("/tenants/{tenant_id}/lists", summary="Customer lists with their member counts")
async def list_customer_lists(
    lists: Lists, limit: LimitQuery = DEFAULT_PAGE_LIMIT, cursor: CursorQuery = None
) -> Page[CustomerListRead]:
    rows = await lists.page(limit=limit + 1, after_id=cursor_position(cursor, int))
    return page_of(rows, limit, _list_read, lambda summary: summary.list.id)


@router.get("/tenants/{tenant_id}/lists/{list_id}", summary="One customer list")
async def get_customer_list(list_id: str, lists: Lists) -> CustomerListRead:
    summary = await lists.get(_list_id(list_id))
    if summary is None:
        raise NotFound("list not found")
    return _list_read(summary)


@router.patch("/tenants/{tenant_id}/lists/{list_id}", summary="Rename a list or change its status")
async def update_customer_list(
    list_id: str, change: CustomerListUpdate, lists: Lists, session: SessionDep
) -> CustomerListRead:
    if not await lists.update(_list_id(list_id), name=change.name, status=change.status):
        raise NotFound("list not found")
    summary = await lists.get(_list_id(list_id))
    await session.commit()
    if summary is None:
        raise NotFound("list not found")
    return _list_read(summary)


@router.get("/tenants/{tenant_id}/lists/{list_id}/members", summary="Members of a list")
async def list_members(
    list_id: str, lists: Lists, limit: LimitQuery = DEFAULT_PAGE_LIMIT, cursor: CursorQuery = None
) -> Page[ListMemberRead]:
    numeric_id = _list_id(list_id)
    if await lists.get(numeric_id) is None:
        raise NotFound("list not found")
    rows = await lists.members_page(numeric_id, limit=limit + 1, after_customer_id=cursor_position(cursor, str))
    return page_of(rows, limit, ListMemberRead.model_validate, lambda member: member.customer_id)
