"""Console page of a tenant's data subject requests (read-only): what mParticle asked for through
the Firehose and what each erasure removed, newest first, from the REST route of
`GET /tenants/{t}/erasures` itself."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from proxy.admin.erasures import routes as erasure_routes
from proxy.console.context import TenantDep, cursor_of, tenant_page
from proxy.console.rendering import ConsoleRoute
from proxy.dependencies import SessionDep
from proxy.pagination import DEFAULT_PAGE_LIMIT

router = APIRouter(prefix="/tenants/{tenant_id}", route_class=ConsoleRoute)


@router.get("/data-subject-requests")
async def data_subject_requests_page(request: Request, tenant: TenantDep, session: SessionDep) -> Response:
    cursor = cursor_of(request)
    page = await erasure_routes.list_erasures(
        tenant_id=tenant.id, session=session, limit=DEFAULT_PAGE_LIMIT, cursor=cursor
    )
    return tenant_page(
        request, "data_subject_requests.html", tenant, requests=page.items, next_cursor=page.next_cursor, cursor=cursor
    )
