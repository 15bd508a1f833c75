"""Admin routes: a tenant's integration configuration and its disconnection (CONTRACT §5).

Every write commits before answering and bumps the tenant's configuration revision, so every
proxy and worker process applies it within CONFIG_CACHE_SECONDS.
"""

from __future__ import annotations

import logging
from typing import Protocol

from fastapi import APIRouter, status
from sqlalchemy.ext.asyncio import AsyncSession

from proxy.admin.configuration.list_schemas import (
    ExternalEventsRead,
    ExternalEventsUpdate,
    InboundMappingsRead,
    InboundMappingsUpdate,
    SyncFieldsRead,
    SyncFieldsUpdate,
)
from proxy.admin.configuration.schemas import (
    AuthenticationTokenRead,
    InboundSettingsRead,
    InboundSettingsUpdate,
    OutboundSettingsRead,
    OutboundSettingsUpdate,
)
from proxy.admin.tenants.routes import TenantIdPath
from proxy.dependencies import SessionDep, SettingsDep
from proxy.openapi import error_responses
from shared.models import ExternalEvent, InboundMapping, SyncField
from shared.tenants.repository import ConfigListModel, TenantRepository

logger = logging.getLogger(__name__)

# Every route names a tenant: an unknown one is a 404.
router = APIRouter(prefix="/tenants/{tenant_id}", tags=["configuration"], responses=error_responses(404))

ListRead = SyncFieldsRead | ExternalEventsRead | InboundMappingsRead


class _ListReader(Protocol):
    async def __call__(self, tenant_id: str, session: AsyncSession) -> ListRead: ...


class _ListReplacer(Protocol):
    async def __call__(self, tenant_id: str, body: ListRead, session: AsyncSession) -> ListRead: ...


async def _commit(session: AsyncSession, tenant_id: str, change: str) -> None:
    """Commit the change (before the route answers) and log it."""
    await session.commit()
    logger.info("tenant %s: %s", tenant_id, change)


# --- outbound settings (loyalty -> mParticle S2S) ----------------------------------------------


@router.get("/outbound-settings", summary="Read the outbound (S2S) settings; the API secret is never returned")
async def get_outbound_settings(tenant_id: TenantIdPath, session: SessionDep) -> OutboundSettingsRead:
    view = await TenantRepository(session).get_outbound_settings(tenant_id)
    return OutboundSettingsRead.of(view)


@router.put(
    "/outbound-settings",
    summary="Save the outbound settings (connects the tenant and issues its inbound token)",
    description="`api_secret` is required on the first save; later, omit it to keep the stored secret.",
    responses=error_responses(422),
)
async def put_outbound_settings(
    tenant_id: TenantIdPath, body: OutboundSettingsUpdate, session: SessionDep, settings: SettingsDep
) -> OutboundSettingsRead:
    view = await TenantRepository(session, settings).save_outbound_settings(tenant_id, **body.model_dump())
    await _commit(session, tenant_id, "outbound settings saved")
    return OutboundSettingsRead.of(view)


# --- inbound settings (mParticle Firehose -> loyalty) ------------------------------------------


@router.get(
    "/inbound-settings",
    summary="Read the inbound settings and the token to paste into mParticle",
    description="Before the first PUT this shows the defaults (`customer`, `id`, false, false).",
    responses=error_responses(409),
)
async def get_inbound_settings(
    tenant_id: TenantIdPath, session: SessionDep, settings: SettingsDep
) -> InboundSettingsRead:
    view = await TenantRepository(session, settings).get_inbound_settings(tenant_id)
    return InboundSettingsRead.of(view)


@router.put(
    "/inbound-settings",
    summary="Save the inbound settings (needs outbound settings first)",
    responses=error_responses(409, 422),
)
async def put_inbound_settings(
    tenant_id: TenantIdPath, body: InboundSettingsUpdate, session: SessionDep, settings: SettingsDep
) -> InboundSettingsRead:
    view = await TenantRepository(session, settings).save_inbound_settings(tenant_id, **body.model_dump())
    await _commit(session, tenant_id, "inbound settings saved")
    return InboundSettingsRead.of(view)


@router.post(
    "/inbound-settings/token/rotate",
    summary="Issue a new inbound authentication token; the previous one stops working",
    responses=error_responses(409),
)
async def rotate_inbound_token(
    tenant_id: TenantIdPath, session: SessionDep, settings: SettingsDep
) -> AuthenticationTokenRead:
    token = await TenantRepository(session, settings).rotate_inbound_token(tenant_id)
    await _commit(session, tenant_id, "inbound token rotated")
    return AuthenticationTokenRead(authentication_token=token)


# --- ordered lists, each replaced as a whole ---------------------------------------------------


def _add_list_document(
    path: str,
    model: type[ConfigListModel],
    read_model: type[ListRead],
    update_model: type[ListRead],
    *,
    name: str,
    get_summary: str,
    put_summary: str,
) -> tuple[_ListReader, _ListReplacer]:
    """GET and PUT `path` (operations `get_<name>`, `put_<name>`): one ordered configuration list.
    Returns both routes' functions (the console calls them too)."""

    @router.get(path, name=f"get_{name}", summary=get_summary, response_model=read_model)
    async def read_list(tenant_id: TenantIdPath, session: SessionDep) -> ListRead:
        rows = await TenantRepository(session).read_list(model, tenant_id)
        return read_model.model_validate({"items": rows})

    async def replace_list(tenant_id: TenantIdPath, body: ListRead, session: SessionDep) -> ListRead:
        items = [item.model_dump() for item in body.items]
        rows = await TenantRepository(session).replace_list(model, tenant_id, items)
        await session.commit()
        return read_model.model_validate({"items": rows})

    replace_list.__annotations__["body"] = update_model  # what FastAPI validates the body against
    router.put(
        path,
        name=f"put_{name}",
        summary=put_summary,
        response_model=read_model,
        responses=error_responses(422),
    )(replace_list)
    return read_list, replace_list


get_sync_fields, put_sync_fields = _add_list_document(
    "/sync-fields",
    SyncField,
    SyncFieldsRead,
    SyncFieldsUpdate,
    name="sync_fields",
    get_summary="Read the sync fields (loyalty customer field -> mParticle user attribute)",
    put_summary="Replace the sync fields",
)
get_external_events, put_external_events = _add_list_document(
    "/external-events",
    ExternalEvent,
    ExternalEventsRead,
    ExternalEventsUpdate,
    name="external_events",
    get_summary="Read the external events (loyalty event -> mParticle custom event)",
    put_summary="Replace the external events (one association per loyalty event)",
)
get_inbound_mappings, put_inbound_mappings = _add_list_document(
    "/inbound-mappings",
    InboundMapping,
    InboundMappingsRead,
    InboundMappingsUpdate,
    name="inbound_mappings",
    get_summary="Read the inbound mappings (Firehose event -> loyalty event)",
    put_summary="Replace the inbound mappings",
)


# --- disconnect ----------------------------------------------------------------------------------


@router.delete(
    "/connection",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Disconnect: remove both directions' settings and mappings, revoke the inbound token",
    description=(
        "Waiting outbound messages (`queued`, `retrying`) become `cancelled`. Customers, ledger, lists,"
        " the error log and finished messages stay. Repeating it is harmless."
    ),
)
async def disconnect(tenant_id: TenantIdPath, session: SessionDep) -> None:
    result = await TenantRepository(session).disconnect(tenant_id)
    await session.commit()
    logger.info("tenant %s disconnected (%d waiting messages cancelled)", tenant_id, result.cancelled_messages)
