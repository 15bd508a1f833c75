"""What the console's tenant pages share: the logged-in session and the tenant, and the few steps
every page takes around a REST route function (read a page of a list, run a write whose refusal
becomes the form's errors, read a count answer)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from proxy.admin.configuration.schemas import TenantRead
from proxy.admin.tenants import routes as tenant_routes
from proxy.console.auth import CheckedForm, ConsoleSessionDep
from proxy.console.forms import FormErrors, bridge_error, typed_confirmation
from proxy.console.rendering import FORM_ERROR_STATUS, render
from proxy.dependencies import SessionDep
from proxy.pagination import Page
from shared.errors import BridgeError

QueryT = TypeVar("QueryT")


async def current_tenant(tenant_id: str, session: SessionDep, _: ConsoleSessionDep) -> TenantRead:
    """The tenant of the page (the REST route's read: a 404 page for an unknown or malformed id)."""
    return await tenant_routes.get_tenant(tenant_id=tenant_routes.valid_tenant_id(tenant_id), session=session)


TenantDep = Annotated[TenantRead, Depends(current_tenant)]


def tenant_url(tenant_id: str, page: str = "") -> str:
    return f"/console/tenants/{tenant_id}{page}"


# What a page says after a write redirected to it with `?done=<key>` (and `&count=<n>`).
DONE_NOTICES = {
    "saved": "Saved.",
    "replayed": "{count} request(s) queued for replay.",
    "requeued": "{count} failed message(s) put back in the queue.",
    "rotated": "A new token was issued: paste it into mParticle.",
    "retried": "Put back in the queue.",
    "cancelled": "Cancelled.",
    "paused": "Delivery paused: calls are still accepted and wait.",
    "resumed": "Delivery resumed: the waiting messages are being delivered, in order.",
}


def done_url(tenant_id: str, page: str, done: str, count: int | None = None) -> str:
    """Where a write sends the browser: the page, saying what was done (DONE_NOTICES)."""
    return f"{tenant_url(tenant_id, page)}?done={done}" + (f"&count={count}" if count is not None else "")


def _done_notice(request: Request) -> str:
    count = request.query_params.get("count", "")
    notice = DONE_NOTICES.get(request.query_params.get("done", ""), "")
    return notice.format(count=int(count) if count.isdigit() else 0)


def tenant_page(
    request: Request,
    template: str,
    tenant: TenantRead,
    errors: FormErrors | None = None,
    notice: str = "",
    **context: Any,
) -> Response:
    """A page of the tenant with its form errors (if any) and a notice: the one given, or after a
    write redirected here, what was done."""
    notice = notice or _done_notice(request)
    values = {"tenant": tenant, "errors": errors or FormErrors(), "notice": notice, **context}
    return render(request, template, values, FORM_ERROR_STATUS if errors else 200)


def cursor_of(request: Request) -> str | None:
    return request.query_params.get("cursor") or None


async def filtered_list_page(
    request: Request,
    template: str,
    tenant: TenantRead,
    params: dict[str, str],
    parsed: tuple[QueryT | None, FormErrors],
    load: Callable[[QueryT, str | None], Awaitable[Page[Any]]],
    **context: Any,
) -> Response:
    """A list page: the REST list route called with the parsed filters (`params` as typed) and the
    page's cursor. Invalid filters, ours or the route's (a foreign cursor), give an empty page and
    the messages beside the filters."""
    query, errors = parsed
    cursor = cursor_of(request)
    items: list[Any] = []
    next_cursor = None
    if query is not None:
        try:
            page = await load(query, cursor)
        except BridgeError as exc:
            errors = bridge_error(exc)
        else:
            items, next_cursor = page.items, page.next_cursor
    return tenant_page(
        request, template, tenant, errors, params=params, cursor=cursor, items=items, next_cursor=next_cursor, **context
    )


ConfirmedAction = Callable[[Request, TenantRead, AsyncSession], Awaitable[Response]]


def add_typed_confirmation(router: APIRouter, path: str, template: str, action: ConfirmedAction) -> None:
    """GET `path`: a page asking to type the tenant id; POST: `action` once the id typed matches,
    else the page again with the message next to the field."""

    async def confirmation_page(request: Request, tenant: TenantDep) -> Response:
        return tenant_page(request, template, tenant)

    async def confirmed(request: Request, tenant: TenantDep, form: CheckedForm, session: SessionDep) -> Response:
        if errors := typed_confirmation(form, tenant.id):
            return tenant_page(request, template, tenant, errors)
        return await action(request, tenant, session)

    router.add_api_route(path, confirmation_page, methods=["GET"], name=f"{action.__name__}_page")
    router.add_api_route(path, confirmed, methods=["POST"], name=action.__name__)


async def write_or_refusal(session: AsyncSession, write: Awaitable[object], field_name: str = "") -> FormErrors:
    """Await a REST route's write; a refusal (a BridgeError) rolls the session back and becomes the
    form's errors (next to `field_name`, or above the form)."""
    try:
        await write
    except BridgeError as exc:
        await session.rollback()
        return bridge_error(exc, field_name)
    return FormErrors()


def count_of(answer: Response) -> int:
    """The `count` of a REST route's `{"count": n}` answer (replay or retry by filter)."""
    count: int = json.loads(bytes(answer.body))["count"]
    return count
