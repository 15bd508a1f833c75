"""Admin routes: a tenant's integration configuration and its disconnection (CONTRACT §5).

Every write commits before answering and bumps the tenant's configuration revision, so every
proxy and worker process applies it within CONFIG_CACHE_SECONDS.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, status

from proxy.admin.configuration.schemas import (
    AuthenticationTokenRead,
    ExternalEventsRead,
    ExternalEventsUpdate,
    InboundMappingsRead,
    InboundMappingsUpdate,
    InboundSettingsRead,
    InboundSettingsUpdate,
    OutboundSettingsRead,
    OutboundSettingsUpdate,
    SyncFieldsRead,
    SyncFieldsUpdate,
)
from proxy.admin.tenants.routes import TenantIdPath
from proxy.dependencies import SessionDep, SettingsDep
from proxy.openapi import error_responses
from shared.tenants.repository import TenantRepository

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/tenants/{tenant_id}", tags=["configuration"])


# --- outbound settings (loyalty -> mParticle S2S) ----------------------------------------------


@router.get(
    "/outbound-settings",
    summary="Read the outbound (S2S) settings; the API secret is never returned",
    response_model=OutboundSettingsRead,
    responses=error_responses(404),
)
async def get_outbound_settings(tenant_id: TenantIdPath, session: SessionDep) -> OutboundSettingsRead:
    view = await TenantRepository(session).get_outbound_settings(tenant_id)
    return OutboundSettingsRead.model_validate(view, from_attributes=True)


@router.put(
    "/outbound-settings",
    summary="Save the outbound settings (connects the tenant and issues its inbound token)",
    description="`api_secret` is required on the first save; later, omit it to keep the stored secret.",
    response_model=OutboundSettingsRead,
    responses=error_responses(404, 422),
)
async def put_outbound_settings(
    tenant_id: TenantIdPath, body: OutboundSettingsUpdate, session: SessionDep, settings: SettingsDep
) -> OutboundSettingsRead:
    view = await TenantRepository(session, settings).save_outbound_settings(tenant_id, **body.model_dump())
    await session.commit()
    logger.info("tenant %s: outbound settings saved", tenant_id)
    return OutboundSettingsRead.model_validate(view, from_attributes=True)


# --- inbound settings (mParticle Firehose -> loyalty) ------------------------------------------


@router.get(
    "/inbound-settings",
    summary="Read the inbound settings and the token to paste into mParticle",
    description="Before the first PUT this shows the defaults (`customer`, `id`, false, false).",
    response_model=InboundSettingsRead,
    responses=error_responses(404, 409),
)
async def get_inbound_settings(
    tenant_id: TenantIdPath, session: SessionDep, settings: SettingsDep
) -> InboundSettingsRead:
    view = await TenantRepository(session, settings).get_inbound_settings(tenant_id)
    return InboundSettingsRead.model_validate(view, from_attributes=True)


@router.put(
    "/inbound-settings",
    summary="Save the inbound settings (needs outbound settings first)",
    response_model=InboundSettingsRead,
    responses=error_responses(404, 409, 422),
)
async def put_inbound_settings(
    tenant_id: TenantIdPath, body: InboundSettingsUpdate, session: SessionDep, settings: SettingsDep
) -> InboundSettingsRead:
    view = await TenantRepository(session, settings).save_inbound_settings(tenant_id, **body.model_dump())
    await session.commit()
    logger.info("tenant %s: inbound settings saved", tenant_id)
    return InboundSettingsRead.model_validate(view, from_attributes=True)


@router.post(
    "/inbound-settings/token/rotate",
    summary="Issue a new inbound authentication token; the previous one stops working",
    response_model=AuthenticationTokenRead,
    responses=error_responses(404, 409),
)
async def rotate_inbound_token(
    tenant_id: TenantIdPath, session: SessionDep, settings: SettingsDep
) -> AuthenticationTokenRead:
    token = await TenantRepository(session, settings).rotate_inbound_token(tenant_id)
    await session.commit()
    logger.info("tenant %s: inbound token rotated", tenant_id)
    return AuthenticationTokenRead(authentication_token=token)


# --- ordered lists, each replaced as a whole ---------------------------------------------------


@router.get(
    "/sync-fields",
    summary="Read the sync fields (loyalty customer field -> mParticle user attribute)",
    response_model=SyncFieldsRead,
    responses=error_responses(404),
)
async def get_sync_fields(tenant_id: TenantIdPath, session: SessionDep) -> SyncFieldsRead:
    rows = await TenantRepository(session).list_sync_fields(tenant_id)
    return SyncFieldsRead.model_validate({"items": rows})


@router.put(
    "/sync-fields",
    summary="Replace the sync fields",
    response_model=SyncFieldsRead,
    responses=error_responses(404, 422),
)
async def put_sync_fields(tenant_id: TenantIdPath, body: SyncFieldsUpdate, session: SessionDep) -> SyncFieldsRead:
    rows = await TenantRepository(session).replace_sync_fields(tenant_id, [item.model_dump() for item in body.items])
    await session.commit()
    return SyncFieldsRead.model_validate({"items": rows})


@router.get(
    "/external-events",
    summary="Read the external events (loyalty event -> mParticle custom event)",
    response_model=ExternalEventsRead,
    responses=error_responses(404),
)
async def get_external_events(tenant_id: TenantIdPath, session: SessionDep) -> ExternalEventsRead:
    rows = await TenantRepository(session).list_external_events(tenant_id)
    return ExternalEventsRead.model_validate({"items": rows})


@router.put(
    "/external-events",
    summary="Replace the external events (one association per loyalty event)",
    response_model=ExternalEventsRead,
    responses=error_responses(404, 422),
)
async def put_external_events(
    tenant_id: TenantIdPath, body: ExternalEventsUpdate, session: SessionDep
) -> ExternalEventsRead:
    items = [item.model_dump() for item in body.items]
    rows = await TenantRepository(session).replace_external_events(tenant_id, items)
    await session.commit()
    return ExternalEventsRead.model_validate({"items": rows})


@router.get(
    "/inbound-mappings",
    summary="Read the inbound mappings (Firehose event -> loyalty event)",
    response_model=InboundMappingsRead,
    responses=error_responses(404),
)
async def get_inbound_mappings(tenant_id: TenantIdPath, session: SessionDep) -> InboundMappingsRead:
    rows = await TenantRepository(session).list_inbound_mappings(tenant_id)
    return InboundMappingsRead.model_validate({"items": rows})


@router.put(
    "/inbound-mappings",
    summary="Replace the inbound mappings",
    response_model=InboundMappingsRead,
    responses=error_responses(404, 422),
)
async def put_inbound_mappings(
    tenant_id: TenantIdPath, body: InboundMappingsUpdate, session: SessionDep
) -> InboundMappingsRead:
    items = [item.model_dump() for item in body.items]
    rows = await TenantRepository(session).replace_inbound_mappings(tenant_id, items)
    await session.commit()
    return InboundMappingsRead.model_validate({"items": rows})


# --- disconnect ----------------------------------------------------------------------------------


@router.delete(
    "/connection",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Disconnect: remove both directions' settings and mappings, revoke the inbound token",
    description=(
        "Waiting outbound messages (`queued`, `retrying`) become `cancelled`. Customers, ledger, lists,"
        " the error log and finished messages stay. Repeating it is harmless."
    ),
    responses=error_responses(404),
)
async def disconnect(tenant_id: TenantIdPath, session: SessionDep) -> None:
    result = await TenantRepository(session).disconnect(tenant_id)
    await session.commit()
    logger.info("tenant %s disconnected (%d waiting messages cancelled)", tenant_id, result.cancelled_messages)
