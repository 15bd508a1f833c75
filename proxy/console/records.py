"""Console pages of a tenant's loyalty records: customers (filter by status or attribute value),
a customer with their ledger, customer lists (rename, activate or deactivate) and their members.

They call the REST route functions of proxy.admin.records themselves (plain coroutines), so paging,
filters, the "attribute and value go together" rule and list updates have one implementation."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from proxy.admin.configuration.schemas import TenantRead
from proxy.admin.records import routes as records
from proxy.admin.records.schemas import CustomerListUpdate, CustomerStatus
from proxy.console.auth import CheckedForm
from proxy.console.context import TenantDep, cursor_of, done_url, filtered_list_page, tenant_page, write_or_refusal
from proxy.console.forms import FormErrors, field_values, given, optional_text, parse
from proxy.console.rendering import ConsoleRoute, redirect
from proxy.dependencies import SessionDep
from proxy.pagination import DEFAULT_PAGE_LIMIT

router = APIRouter(prefix="/tenants/{tenant_id}", route_class=ConsoleRoute)


class CustomerFilter(BaseModel):
    """The customer list's query parameters, typed like the REST route's."""

    model_config = ConfigDict(extra="ignore")

    status: CustomerStatus | None = None
    attribute: str | None = None
    value: str | None = None


@router.get("/customers")
async def customers_page(request: Request, tenant: TenantDep, session: SessionDep) -> Response:
    params = field_values(request.query_params, ("status", "attribute", "value"))
    repository = await records.tenant_customers(tenant.id, session)
    return await filtered_list_page(
        request,
        "customers.html",
        tenant,
        params,
        parse(CustomerFilter, given(params)),
        lambda filters, cursor: records.list_customers(
            repository,
            attribute=filters.attribute,
            value=filters.value,
            status=filters.status,
            limit=DEFAULT_PAGE_LIMIT,
            cursor=cursor,
        ),
    )


@router.get("/customers/{customer_id}")
async def customer_page(request: Request, tenant: TenantDep, customer_id: str, session: SessionDep) -> Response:
    repository = await records.tenant_customers(tenant.id, session)
    customer = await records.get_customer(customer_id, repository)
    cursor = cursor_of(request)
    ledger = await records.list_customer_events(customer_id, repository, limit=DEFAULT_PAGE_LIMIT, cursor=cursor)
    return tenant_page(request, "customer.html", tenant, customer=customer, ledger=ledger, cursor=cursor)


@router.get("/lists")
async def lists_page(request: Request, tenant: TenantDep, session: SessionDep) -> Response:
    cursor = cursor_of(request)
    lists = await records.tenant_lists(await records.tenant_customers(tenant.id, session))
    page = await records.list_customer_lists(lists, limit=DEFAULT_PAGE_LIMIT, cursor=cursor)
    return tenant_page(request, "lists.html", tenant, lists=page.items, next_cursor=page.next_cursor, cursor=cursor)


async def _list_page(
    request: Request, tenant: TenantRead, list_id: str, session: SessionDep, errors: FormErrors | None = None
) -> Response:
    lists = await records.tenant_lists(await records.tenant_customers(tenant.id, session))
    customer_list = await records.get_customer_list(list_id, lists)
    cursor = cursor_of(request)
    members = await records.list_members(list_id, lists, limit=DEFAULT_PAGE_LIMIT, cursor=cursor)
    return tenant_page(request, "list.html", tenant, errors, list=customer_list, members=members, cursor=cursor)


@router.get("/lists/{list_id}")
async def list_page(request: Request, tenant: TenantDep, list_id: str, session: SessionDep) -> Response:
    return await _list_page(request, tenant, list_id, session)


@router.post("/lists/{list_id}")
async def update_list(
    request: Request, tenant: TenantDep, list_id: str, form: CheckedForm, session: SessionDep
) -> Response:
    change, errors = parse(
        CustomerListUpdate, {"name": optional_text(form, "name"), "status": optional_text(form, "status")}
    )
    if change is not None:
        lists = await records.tenant_lists(await records.tenant_customers(tenant.id, session))
        errors = await write_or_refusal(session, records.update_customer_list(list_id, change, lists, session))
    if errors:
        return await _list_page(request, tenant, list_id, session, errors)
    return redirect(done_url(tenant.id, f"/lists/{list_id}", "saved"))
