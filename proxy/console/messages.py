"""Console pages of a tenant's outbound messages and resend queue: status, the attempt timeline
(each attempt's id and trigger), retry a failed message, cancel a waiting one, "retry all failed
matching this filter" (the count first), and pausing / resuming the tenant's delivery. Filters are
parsed with the REST list's own query schema (OutboundMessageQuery) and every read and write is a
call to the REST route functions themselves (plain coroutines)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from proxy.admin.configuration.schemas import TenantRead
from proxy.admin.messages import routes as message_routes
from proxy.admin.messages.schemas import OutboundKind, OutboundMessageQuery, OutboundMessageRead, OutboundStatus
from proxy.console.auth import CheckedForm
from proxy.console.context import TenantDep, count_of, done_url, filtered_list_page, tenant_page, write_or_refusal
from proxy.console.forms import FormErrors, field_values, given, parse, parse_or_refuse
from proxy.console.rendering import ConsoleRoute, redirect
from proxy.dependencies import SessionDep, StateDep
from proxy.pagination import DEFAULT_PAGE_LIMIT, Page

router = APIRouter(prefix="/tenants/{tenant_id}", route_class=ConsoleRoute)

STATUSES: tuple[str, ...] = tuple(status.value for status in OutboundStatus)
KINDS: tuple[str, ...] = tuple(kind.value for kind in OutboundKind)
FILTERS = ("status", "kind", "customer_id", "created_from", "created_to", "last_status_code")
# The retry by filter takes every filter but the status (it retries failed messages only).
RETRY_FILTERS = tuple(name for name in FILTERS if name != "status")


async def _list_page(request: Request, tenant: TenantRead, session: SessionDep, *, resend_queue: bool) -> Response:
    params = field_values(request.query_params, FILTERS)
    if resend_queue:
        params["status"] = ""

    async def load(query: OutboundMessageQuery, cursor: str | None) -> Page[OutboundMessageRead]:
        if resend_queue:
            return await message_routes.list_resend_queue(
                tenant_id=tenant.id,
                session=session,
                kind=query.kind,
                customer_id=query.customer_id,
                limit=DEFAULT_PAGE_LIMIT,
                cursor=cursor,
            )
        return await message_routes.list_outbound_messages(
            tenant_id=tenant.id, session=session, query=query, limit=DEFAULT_PAGE_LIMIT, cursor=cursor
        )

    return await filtered_list_page(
        request,
        "outbound_messages.html",
        tenant,
        params,
        parse(OutboundMessageQuery, given(params)),
        load,
        retry_params={name: params[name] for name in RETRY_FILTERS},
        statuses=STATUSES,
        kinds=KINDS,
        resend_queue=resend_queue,
    )


async def _retry_matching(
    tenant_id: str, session: SessionDep, state: StateDep, query: OutboundMessageQuery, *, dry_run: bool
) -> int:
    """The REST route "retry failed outbound by filter" (it commits and kicks delivery itself)."""
    answer = await message_routes.retry_outbound_messages(
        tenant_id=tenant_id, session=session, state=state, query=query, dry_run=dry_run
    )
    return count_of(answer)


@router.get("/outbound/messages")
async def messages_page(request: Request, tenant: TenantDep, session: SessionDep) -> Response:
    return await _list_page(request, tenant, session, resend_queue=False)


@router.get("/resend-queue")
async def resend_queue_page(request: Request, tenant: TenantDep, session: SessionDep) -> Response:
    return await _list_page(request, tenant, session, resend_queue=True)


@router.post("/outbound/pause")
async def pause_delivery(tenant: TenantDep, _: CheckedForm, session: SessionDep) -> Response:
    await message_routes.pause_outbound_delivery(tenant_id=tenant.id, session=session)
    return redirect(done_url(tenant.id, "/outbound/messages", "paused"))


@router.post("/outbound/resume")
async def resume_delivery(tenant: TenantDep, _: CheckedForm, session: SessionDep, state: StateDep) -> Response:
    await message_routes.resume_outbound_delivery(tenant_id=tenant.id, session=session, state=state)
    return redirect(done_url(tenant.id, "/outbound/messages", "resumed"))


@router.get("/outbound/messages/retry")
async def retry_all_confirmation(request: Request, tenant: TenantDep, session: SessionDep, state: StateDep) -> Response:
    """How many failed messages match the list's filter (the REST route's dry run), before retrying."""
    params = field_values(request.query_params, RETRY_FILTERS)
    query, errors = parse(OutboundMessageQuery, given(params))
    count = 0 if query is None else await _retry_matching(tenant.id, session, state, query, dry_run=True)
    return tenant_page(request, "retry_all.html", tenant, errors, params=params, count=count)


@router.post("/outbound/messages/retry")
async def retry_all(tenant: TenantDep, form: CheckedForm, session: SessionDep, state: StateDep) -> Response:
    query = parse_or_refuse(OutboundMessageQuery, given(field_values(form, RETRY_FILTERS)))
    count = await _retry_matching(tenant.id, session, state, query, dry_run=False)
    return redirect(done_url(tenant.id, "/outbound/messages", "requeued", count))


async def _message_page(
    request: Request, tenant: TenantRead, message_id: str, session: SessionDep, errors: FormErrors | None = None
) -> Response:
    message = await message_routes.get_outbound_message(tenant_id=tenant.id, message_id=message_id, session=session)
    return tenant_page(request, "outbound_message.html", tenant, errors, message=message)


@router.get("/outbound/messages/{message_id}")
async def message_page(request: Request, tenant: TenantDep, message_id: str, session: SessionDep) -> Response:
    return await _message_page(request, tenant, message_id, session)


@router.post("/outbound/messages/{message_id}/retry")
async def retry_message(
    request: Request, tenant: TenantDep, message_id: str, _: CheckedForm, session: SessionDep, state: StateDep
) -> Response:
    retry = message_routes.retry_outbound_message(
        tenant_id=tenant.id, message_id=message_id, session=session, state=state
    )
    if errors := await write_or_refusal(session, retry):
        return await _message_page(request, tenant, message_id, session, errors)
    return redirect(done_url(tenant.id, f"/outbound/messages/{message_id}", "retried"))


@router.post("/outbound/messages/{message_id}/cancel")
async def cancel_message(
    request: Request, tenant: TenantDep, message_id: str, _: CheckedForm, session: SessionDep
) -> Response:
    cancel = message_routes.cancel_outbound_message(tenant_id=tenant.id, message_id=message_id, session=session)
    if errors := await write_or_refusal(session, cancel):
        return await _message_page(request, tenant, message_id, session, errors)
    return redirect(done_url(tenant.id, f"/outbound/messages/{message_id}", "cancelled"))
