"""Console page of a tenant's incoming error log: filters in the URL (a view can be shared), sort
on every column, cursor pages, when and with what outcome each entry was replayed, rows that
expand (htmx) to the beautified payload with copy, `.json` / `.txt` downloads and Replay, and
replay of every entry matching the filters after showing their count. The REST routes' schemas and
route functions do the work."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from proxy.admin.errorlog import routes as errorlog_routes
from proxy.admin.errorlog import service
from proxy.admin.errorlog.schemas import IncomingErrorDetail, IncomingErrorListQuery, PayloadFormat, ReplayQuery
from proxy.console.auth import CheckedForm
from proxy.console.context import TenantDep, count_of, done_url, filtered_list_page, tenant_page
from proxy.console.forms import FormErrors, field_values, given, parse, parse_or_refuse
from proxy.console.rendering import ConsoleRoute, redirect, render
from proxy.dependencies import SessionDep, StateDep
from proxy.pagination import DEFAULT_PAGE_LIMIT
from shared.errorlog.repository import NOT_REPLAYABLE_SOURCES
from shared.errors import BridgeError, ErrorSource, NotFound

router = APIRouter(prefix="/tenants/{tenant_id}/incoming-errors", route_class=ConsoleRoute)

FILTERS = (
    "source",
    "error_code",
    "request_id",
    "message",
    "created_from",
    "created_to",
    "logged_from",
    "logged_to",
)
COLUMNS = (
    ("id", "Id"),
    ("request_id", "Request id"),
    ("error_code", "Error code"),
    ("message", "Message"),
    ("source", "Error source"),
    ("created_at", "Created at"),
    ("logged_at", "Logged at"),
)
SOURCE_LABELS = {
    ErrorSource.PROXY_REQUEST.value: "Proxy request time",
    ErrorSource.PROXY_FORWARDING.value: "Proxy event forwarding",
    ErrorSource.ENGINE_REQUEST.value: "Engine request time",
    ErrorSource.ENGINE_PROCESSING.value: "Engine event processing",
}


@router.get("")
async def error_log_page(request: Request, tenant: TenantDep, session: SessionDep) -> Response:
    params = field_values(request.query_params, (*FILTERS, "sort"))
    query, errors = parse(IncomingErrorListQuery, given(params))
    return await filtered_list_page(
        request,
        "incoming_errors.html",
        tenant,
        params,
        (query, errors),
        lambda query, cursor: errorlog_routes.list_incoming_errors(
            tenant_id=tenant.id, query=query, session=session, limit=DEFAULT_PAGE_LIMIT, cursor=cursor
        ),
        filters={name: params[name] for name in FILTERS},
        sort=query.sort.value if query is not None else "-logged_at",
        columns=COLUMNS,
        sources=SOURCE_LABELS,
    )


@router.get("/replay")
async def replay_confirmation(request: Request, tenant: TenantDep, session: SessionDep, state: StateDep) -> Response:
    """How many entries a replay of the list's filters would queue (the REST route's dry run)."""
    params = field_values(request.query_params, FILTERS)
    query, errors = parse(ReplayQuery, {**given(params), "dry_run": True})
    count = 0
    if query is not None:
        count = count_of(
            await errorlog_routes.replay_matching(tenant_id=tenant.id, query=query, session=session, state=state)
        )
    return tenant_page(request, "replay_all.html", tenant, errors, params=params, count=count)


@router.post("/replay")
async def replay_all(tenant: TenantDep, form: CheckedForm, session: SessionDep, state: StateDep) -> Response:
    query = parse_or_refuse(ReplayQuery, given(field_values(form, FILTERS)))
    answer = await errorlog_routes.replay_matching(tenant_id=tenant.id, query=query, session=session, state=state)
    return redirect(done_url(tenant.id, "/incoming-errors", "replayed", count_of(answer)))


def replay_refusal(entry: IncomingErrorDetail) -> str:
    """Why the entry cannot be replayed ("" when it can): the REST route would refuse it (409)."""
    if entry.source in NOT_REPLAYABLE_SOURCES:
        return "Replay is not possible: the proxy rejected this request, so it never was a valid one."
    if entry.payload is None:
        return "Replay is not possible without a payload."
    return ""


async def _detail(
    request: Request, tenant: Any, entry_id: str, session: SessionDep, errors: FormErrors, notice: str = ""
) -> Response:
    """The expanded row (an htmx fragment): the payload as the downloads render it, and Replay."""
    entry = await errorlog_routes.get_incoming_error(tenant_id=tenant.id, entry_id=entry_id, session=session)
    context = {
        "tenant": tenant,
        "entry": entry,
        "payload": service.render_payload(entry.payload).decode() if entry.payload is not None else None,
        "replay_refusal": replay_refusal(entry),
        "errors": errors,
        "notice": notice,
    }
    return render(request, "incoming_error_detail.html", context)


@router.get("/{entry_id}/detail")
async def entry_detail(request: Request, tenant: TenantDep, entry_id: str, session: SessionDep) -> Response:
    return await _detail(request, tenant, entry_id, session, FormErrors())


@router.post("/{entry_id}/replay")
async def replay_entry(
    request: Request, tenant: TenantDep, entry_id: str, _: CheckedForm, session: SessionDep, state: StateDep
) -> Response:
    """Replay one entry (posted by htmx from the expanded row, which it replaces): queued, or the
    REST route's refusal (409 NOT_REPLAYABLE / NO_PAYLOAD) as a message."""
    errors = FormErrors()
    try:
        await errorlog_routes.replay_entry(tenant_id=tenant.id, entry_id=entry_id, session=session, state=state)
    except BridgeError as exc:  # it writes nothing: no rollback
        errors.add("", f"Replay refused ({exc.code.value}): {exc.message}")
    notice = "" if errors else "Queued for replay: reload the log once the worker applied it to see the outcome."
    return await _detail(request, tenant, entry_id, session, errors, notice)


@router.get("/{entry_id}/payload.{extension}")
async def download_payload(tenant: TenantDep, entry_id: str, extension: str, session: SessionDep) -> Response:
    """The REST route's own download (same bytes, media type and attachment headers)."""
    try:
        payload_format = PayloadFormat(extension)
    except ValueError:
        raise NotFound(f"no {extension!r} download") from None
    return await errorlog_routes.download_payload(
        tenant_id=tenant.id, entry_id=entry_id, session=session, payload_format=payload_format
    )
