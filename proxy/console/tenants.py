"""Console pages: the tenant list, creating a tenant (its engine key shown once), deleting one with
a typed confirmation, and rotating the engine key. The forms are parsed with the REST schemas and
handed to the REST route functions themselves (plain coroutines): one code path for both."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from proxy.admin.configuration.schemas import TenantCreate, TenantRead
from proxy.admin.tenants import routes as tenant_routes
from proxy.console.auth import CheckedForm, ConsoleSessionDep
from proxy.console.context import TenantDep, add_typed_confirmation, cursor_of, tenant_url
from proxy.console.forms import FormErrors, bridge_error, parse, text
from proxy.console.rendering import CONSOLE_PREFIX, FORM_ERROR_STATUS, ConsoleRoute, redirect, render
from proxy.dependencies import SessionDep
from shared.errors import Conflict

router = APIRouter(route_class=ConsoleRoute)

PAGE_SIZE = 50


async def _tenants_page(
    request: Request, session: SessionDep, values: dict[str, str], errors: FormErrors, status: int = 200
) -> Response:
    cursor = cursor_of(request)
    page = await tenant_routes.list_tenants(session=session, limit=PAGE_SIZE, cursor=cursor)
    tenants, next_cursor = page.items, page.next_cursor
    context = {"tenants": tenants, "next_cursor": next_cursor, "cursor": cursor, "values": values, "errors": errors}
    return render(request, "tenants.html", context, status)


@router.get("/tenants")
async def tenants_page(request: Request, session: SessionDep, _: ConsoleSessionDep) -> Response:
    return await _tenants_page(request, session, {}, FormErrors())


@router.post("/tenants")
async def create_tenant(request: Request, form: CheckedForm, session: SessionDep) -> Response:
    values = {"id": text(form, "id"), "name": text(form, "name")}
    body, errors = parse(TenantCreate, values)
    if body is not None:
        try:
            tenant = await tenant_routes.create_tenant(body=body, session=session)
        except Conflict as exc:
            await session.rollback()
            errors = bridge_error(exc, "id")
        else:
            return render(request, "tenant_created.html", {"created": tenant, "tenant": tenant}, 201)
    return await _tenants_page(request, session, values, errors, FORM_ERROR_STATUS)


@router.get("/tenants/{tenant_id}")
async def tenant_home(tenant: TenantDep) -> Response:
    page = "/outbound/messages" if tenant.connected else "/outbound-settings"
    return redirect(tenant_url(tenant.id, page))


async def delete_tenant(_: Request, tenant: TenantRead, session: AsyncSession) -> Response:
    await tenant_routes.delete_tenant(tenant_id=tenant.id, session=session)
    return redirect(f"{CONSOLE_PREFIX}/tenants?deleted={tenant.id}")


add_typed_confirmation(router, "/tenants/{tenant_id}/delete", "tenant_delete.html", delete_tenant)


@router.post("/tenants/{tenant_id}/engine-key/rotate")
async def rotate_engine_key(request: Request, tenant: TenantDep, _: CheckedForm, session: SessionDep) -> Response:
    rotated = await tenant_routes.rotate_engine_key(tenant_id=tenant.id, session=session)
    return render(request, "engine_key.html", {"tenant": tenant, "engine_api_key": rotated.engine_api_key})
