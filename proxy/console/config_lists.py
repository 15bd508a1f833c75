"""Console pages of a tenant's ordered configuration lists: sync fields, external events and inbound
mappings. Rows are added and removed on the server (no script needed); Save parses the rows with
the REST route's `…Update` schema and hands them to the REST route function itself (GET and PUT of
`/tenants/{t}/<list>`, plain coroutines): one code path for both."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from proxy.admin.configuration import routes
from proxy.admin.configuration.list_schemas import ExternalEventsUpdate, InboundMappingsUpdate, SyncFieldsUpdate
from proxy.admin.configuration.schemas import TenantRead
from proxy.console.auth import CheckedForm
from proxy.console.context import TenantDep, done_url, tenant_page, write_or_refusal
from proxy.console.forms import (
    FormErrors,
    attribute_lines,
    integer_or_text,
    parse,
    parse_attribute_lines,
    row_indexes,
    text,
)
from proxy.console.rendering import ConsoleRoute, redirect
from proxy.dependencies import SessionDep
from shared.vocabulary import FIREHOSE_EVENT_TYPES, RESERVED_USER_ATTRIBUTES, S2S_CUSTOM_EVENT_TYPES

router = APIRouter(prefix="/tenants/{tenant_id}", route_class=ConsoleRoute)

# The REST routes' GET and PUT of a list, as (session, tenant id[, body]) -> {items: [...]}.
Reader = Callable[[AsyncSession, str], Awaitable[BaseModel]]
Replacer = Callable[[AsyncSession, str, Any], Awaitable[BaseModel]]
RESERVED_ATTRIBUTES = sorted(RESERVED_USER_ATTRIBUTES)


@dataclass(frozen=True)
class Column:
    name: str
    label: str
    kind: str = "text"  # text, select, number, attributes
    options: tuple[str, ...] = ()
    datalist: str = ""
    optional: bool = False  # empty means "not given" (the schema's default)


@dataclass(frozen=True)
class ConfigList:
    slug: str
    title: str
    intro: str
    columns: tuple[Column, ...]
    update_model: type[BaseModel]
    read: Reader
    replace: Replacer


SYNC_FIELDS = ConfigList(
    slug="sync-fields",
    title="Sync fields",
    intro="Loyalty customer fields sent to mParticle as user attributes. A remote field starting with `$` "
    "must be one of mParticle's reserved attributes (offered in the list).",
    columns=(
        Column("loyalty_field", "Loyalty field"),
        Column("remote_field", "Remote field (mParticle)", datalist="reserved-attributes"),
    ),
    update_model=SyncFieldsUpdate,
    read=lambda session, tenant_id: routes.get_sync_fields(tenant_id=tenant_id, session=session),
    replace=lambda session, tenant_id, body: routes.put_sync_fields(tenant_id=tenant_id, body=body, session=session),
)
EXTERNAL_EVENTS = ConfigList(
    slug="external-events",
    title="External events",
    intro="Loyalty events pushed to mParticle as custom events (one association per loyalty event). "
    "Attribute templates read the loyalty event's data: `{reward}`, `{a.b}`.",
    columns=(
        Column("loyalty_event", "Loyalty event"),
        Column("event_name", "mParticle event name"),
        Column("custom_event_type", "Custom event type", kind="select", options=tuple(sorted(S2S_CUSTOM_EVENT_TYPES))),
        Column("attributes", "Attributes (name = template)", kind="attributes"),
    ),
    update_model=ExternalEventsUpdate,
    read=lambda session, tenant_id: routes.get_external_events(tenant_id=tenant_id, session=session),
    replace=lambda session, tenant_id, body: routes.put_external_events(
        tenant_id=tenant_id, body=body, session=session
    ),
)
INBOUND_MAPPINGS = ConfigList(
    slug="inbound-mappings",
    title="Inbound mappings",
    intro="Which Firehose events become which loyalty events. Lower priority values are processed first; "
    "the event name is required for custom_event and allowed for screen_view, product_action and promotion_action.",
    columns=(
        Column("loyalty_event", "Loyalty event"),
        Column("event_type", "Event type", kind="select", options=tuple(sorted(FIREHOSE_EVENT_TYPES))),
        Column("event_name", "Event name", optional=True),
        Column("priority", "Priority (0 to 1000)", kind="number", optional=True),
        Column("attributes", "Attributes (name = template)", kind="attributes"),
    ),
    update_model=InboundMappingsUpdate,
    read=lambda session, tenant_id: routes.get_inbound_mappings(tenant_id=tenant_id, session=session),
    replace=lambda session, tenant_id, body: routes.put_inbound_mappings(
        tenant_id=tenant_id, body=body, session=session
    ),
)


def _shown(config: ConfigList, item: dict[str, Any]) -> dict[str, str]:
    """A saved item as the form's text values."""
    row: dict[str, str] = {}
    for column in config.columns:
        value = item.get(column.name)
        if column.kind == "attributes":
            row[column.name] = attribute_lines(value or {})
        else:
            row[column.name] = "" if value is None else str(value)
    return row


def _submitted_rows(config: ConfigList, form: FormData) -> list[dict[str, str]]:
    return [
        {column.name: text(form, f"items-{index}-{column.name}") for column in config.columns}
        for index in row_indexes(form)
    ]


def _wire_items(config: ConfigList, rows: list[dict[str, str]], errors: FormErrors) -> list[dict[str, Any]]:
    """The rows as the JSON items a REST client would send; attribute lines that are not
    `name = value` are reported here (the only rule the console has: it is its own text format)."""
    items = []
    for position, row in enumerate(rows):
        item: dict[str, Any] = {}
        for column in config.columns:
            value = row[column.name]
            if column.optional and value.strip() == "":
                continue
            if column.kind == "number":
                item[column.name] = integer_or_text(value)
            elif column.kind == "attributes":
                attributes = parse_attribute_lines(value)
                if isinstance(attributes, str):
                    errors.add(f"items-{position}-attributes", attributes)
                    attributes = {}
                item[column.name] = attributes
            else:
                item[column.name] = value
        items.append(item)
    return items


def _page(
    request: Request,
    tenant: TenantRead,
    config: ConfigList,
    rows: list[dict[str, str]],
    errors: FormErrors | None = None,
    notice: str = "",
) -> Response:
    return tenant_page(
        request,
        "config_list.html",
        tenant,
        errors,
        notice,
        config=config,
        rows=rows,
        reserved_attributes=RESERVED_ATTRIBUTES,
        show_template_rules=any(column.kind == "attributes" for column in config.columns),
    )


async def _show(request: Request, tenant: TenantRead, session: AsyncSession, config: ConfigList) -> Response:
    saved = await config.read(session, tenant.id)
    items = saved.model_dump()["items"]
    return _page(request, tenant, config, [_shown(config, item) for item in items])


async def _submit(
    request: Request, tenant: TenantRead, form: FormData, session: AsyncSession, config: ConfigList
) -> Response:
    rows = _submitted_rows(config, form)
    action = text(form, "action")
    if action == "add":
        rows.append({column.name: "" for column in config.columns})
        return _page(request, tenant, config, rows, notice="Row added; Save to apply.")
    if action.startswith("remove-"):
        position = action.removeprefix("remove-")
        if position.isdigit() and int(position) < len(rows):
            del rows[int(position)]
        return _page(request, tenant, config, rows, notice="Row removed; Save to apply.")
    errors = FormErrors()
    items = _wire_items(config, rows, errors)
    body, schema_errors = parse(config.update_model, {"items": items})
    errors.merge(schema_errors)
    if body is not None and not errors:
        errors = await write_or_refusal(session, config.replace(session, tenant.id, body))
    if errors:
        return _page(request, tenant, config, rows, errors)
    return redirect(done_url(tenant.id, f"/{config.slug}", "saved"))


def _add_routes(config: ConfigList) -> None:
    """GET shows the saved list, POST adds or removes a row or saves the rows."""

    async def show(request: Request, tenant: TenantDep, session: SessionDep) -> Response:
        return await _show(request, tenant, session, config)

    async def submit(request: Request, tenant: TenantDep, form: CheckedForm, session: SessionDep) -> Response:
        return await _submit(request, tenant, form, session, config)

    name = config.slug.replace("-", "_")
    router.add_api_route(f"/{config.slug}", show, methods=["GET"], name=f"{name}_page")
    router.add_api_route(f"/{config.slug}", submit, methods=["POST"], name=f"save_{name}")


for _config in (SYNC_FIELDS, EXTERNAL_EVENTS, INBOUND_MAPPINGS):
    _add_routes(_config)
