"""Console pages: a tenant's outbound settings (the secret is write-only), inbound settings (the
token with copy and rotate), and Disconnect with a typed confirmation.

Forms are parsed with the REST routes' schemas and handed to the REST route functions themselves
(plain coroutines): one code path for both. A PUT replaces the whole document, so each form starts
from the saved values and overlays its fields: a setting the form does not show keeps its value."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from proxy.admin.configuration import routes as configuration_routes
from proxy.admin.configuration.schemas import InboundSettingsUpdate, OutboundSettingsUpdate, TenantRead
from proxy.console.auth import CheckedForm
from proxy.console.context import TenantDep, add_typed_confirmation, done_url, tenant_page, write_or_refusal
from proxy.console.forms import FormErrors, checkbox, integer_or_text, optional_text, parse, text
from proxy.console.rendering import ConsoleRoute, redirect
from proxy.dependencies import SessionDep, SettingsDep
from shared.errors import BridgeError, Conflict, NotFound
from shared.vocabulary import DEFAULT_S2S_API_URL, FIREHOSE_IDENTITY_TYPES, S2S_IDENTITY_KEYS

router = APIRouter(prefix="/tenants/{tenant_id}", route_class=ConsoleRoute)

OUTBOUND_DEFAULTS: dict[str, Any] = {
    "api_url": DEFAULT_S2S_API_URL,
    "api_key": "",
    "api_secret_set": False,
    "development": False,
    "sync_only_configured_identifiers": False,
    "loyalty_identifier_field": "id",
    "customer_identifier_field": "customer_id",
}
IDENTITY_KEYS = sorted(S2S_IDENTITY_KEYS)
IDENTITY_TYPES = sorted(FIREHOSE_IDENTITY_TYPES)


async def _saved(read: Awaitable[BaseModel], missing: type[BridgeError]) -> dict[str, Any] | None:
    """A REST route's saved settings as a dict; None when it answers `missing` (nothing saved)."""
    try:
        return (await read).model_dump()
    except missing:
        return None


# --- outbound settings ---------------------------------------------------------------------------


def _outbound_page(
    request: Request, tenant: TenantRead, values: dict[str, Any], errors: FormErrors | None = None
) -> Response:
    return tenant_page(request, "outbound_settings.html", tenant, errors, values=values, identity_keys=IDENTITY_KEYS)


@router.get("/outbound-settings")
async def outbound_settings_page(request: Request, tenant: TenantDep, session: SessionDep) -> Response:
    saved = await _saved(configuration_routes.get_outbound_settings(tenant_id=tenant.id, session=session), NotFound)
    return _outbound_page(request, tenant, saved or dict(OUTBOUND_DEFAULTS))


@router.post("/outbound-settings")
async def save_outbound_settings(
    request: Request, tenant: TenantDep, form: CheckedForm, session: SessionDep, settings: SettingsDep
) -> Response:
    saved = await _saved(configuration_routes.get_outbound_settings(tenant_id=tenant.id, session=session), NotFound)
    values = {
        **(saved or {}),
        "api_url": text(form, "api_url"),
        "pod": None,  # the form edits api_url itself
        "api_key": text(form, "api_key"),
        "api_secret": optional_text(form, "api_secret"),  # empty: keep the stored secret
        "development": checkbox(form, "development"),
        "sync_only_configured_identifiers": checkbox(form, "sync_only_configured_identifiers"),
        "loyalty_identifier_field": text(form, "loyalty_identifier_field"),
        "customer_identifier_field": text(form, "customer_identifier_field"),
    }
    body, errors = parse(OutboundSettingsUpdate, values)
    if body is not None:
        write = configuration_routes.put_outbound_settings(
            tenant_id=tenant.id, body=body, session=session, settings=settings
        )
        errors = await write_or_refusal(session, write, "api_secret")
    if errors:
        shown = {**values, "api_secret": None, "api_secret_set": bool(saved and saved["api_secret_set"])}
        return _outbound_page(request, tenant, shown, errors)
    return redirect(done_url(tenant.id, "/outbound-settings", "saved"))


# --- inbound settings ----------------------------------------------------------------------------


def _inbound_page(
    request: Request, tenant: TenantRead, values: dict[str, Any] | None, errors: FormErrors | None = None
) -> Response:
    return tenant_page(request, "inbound_settings.html", tenant, errors, values=values, identity_types=IDENTITY_TYPES)


async def _saved_inbound(session: SessionDep, settings: SettingsDep, tenant_id: str) -> dict[str, Any] | None:
    """The saved inbound settings with the token; None while the tenant is not connected."""
    read = configuration_routes.get_inbound_settings(tenant_id=tenant_id, session=session, settings=settings)
    return await _saved(read, Conflict)


@router.get("/inbound-settings")
async def inbound_settings_page(
    request: Request, tenant: TenantDep, session: SessionDep, settings: SettingsDep
) -> Response:
    return _inbound_page(request, tenant, await _saved_inbound(session, settings, tenant.id))


@router.post("/inbound-settings")
async def save_inbound_settings(
    request: Request, tenant: TenantDep, form: CheckedForm, session: SessionDep, settings: SettingsDep
) -> Response:
    # Every field the page shows, over the saved document: a field it does not show keeps its value.
    values = {
        **(await _saved_inbound(session, settings, tenant.id) or {}),
        "customer_identifier_field": text(form, "customer_identifier_field"),
        "loyalty_identifier_field": text(form, "loyalty_identifier_field"),
        "track_audience_data": checkbox(form, "track_audience_data"),
        "auto_subscribe": checkbox(form, "auto_subscribe"),
        "max_data_age_hours": integer_or_text(text(form, "max_data_age_hours")),
    }
    body, errors = parse(InboundSettingsUpdate, values)
    if body is not None:
        write = configuration_routes.put_inbound_settings(
            tenant_id=tenant.id, body=body, session=session, settings=settings
        )
        errors = await write_or_refusal(session, write)
    if errors:
        return _inbound_page(request, tenant, values, errors)
    return redirect(done_url(tenant.id, "/inbound-settings", "saved"))


@router.post("/inbound-settings/token/rotate")
async def rotate_inbound_token(
    tenant: TenantDep, _: CheckedForm, session: SessionDep, settings: SettingsDep
) -> Response:
    await configuration_routes.rotate_inbound_token(tenant_id=tenant.id, session=session, settings=settings)
    return redirect(done_url(tenant.id, "/inbound-settings", "rotated"))


# --- disconnect ------------------------------------------------------------------------------------


async def disconnect(request: Request, tenant: TenantRead, session: AsyncSession) -> Response:
    await configuration_routes.disconnect(tenant_id=tenant.id, session=session)
    disconnected = tenant.model_copy(update={"connected": False})
    return tenant_page(request, "disconnect.html", disconnected, done=True)


add_typed_confirmation(router, "/disconnect", "disconnect.html", disconnect)
