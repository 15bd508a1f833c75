"""Admin routes: tenants (create, list, read, delete) and engine-key rotation (CONTRACT §5)."""

from __future__ import annotations

import logging
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from proxy.admin.configuration.schemas import (
    TENANT_ID_PATTERN,
    EngineKeyRead,
    TenantCreate,
    TenantCreated,
    TenantRead,
)
from proxy.dependencies import SessionDep
from proxy.openapi import error_responses
from proxy.pagination import DEFAULT_PAGE_LIMIT, CursorQuery, LimitQuery, Page, cursor_position, page_of
from shared.errors import NotFound
from shared.tenants.repository import TenantRepository

logger = logging.getLogger(__name__)

router = APIRouter(tags=["tenants"])

_TENANT_ID = re.compile(TENANT_ID_PATTERN)


def valid_tenant_id(
    tenant_id: Annotated[str, Path(description="the tenant id (`loyaltyEnvironment` in mParticle)")],
) -> str:
    """The `{tenant_id}` path segment; a malformed id can name no tenant, so it is a 404 too."""
    if not _TENANT_ID.fullmatch(tenant_id):
        raise NotFound(f"tenant {tenant_id!r} not found")
    return tenant_id


TenantIdPath = Annotated[str, Depends(valid_tenant_id)]


@router.post(
    "/tenants",
    status_code=status.HTTP_201_CREATED,
    summary="Create a tenant (its engine API key is shown only in this response)",
    responses=error_responses(409, 422),
)
async def create_tenant(body: TenantCreate, session: SessionDep) -> TenantCreated:
    created = await TenantRepository(session).create_tenant(body.id, body.name)
    await session.commit()
    logger.info("tenant %s created", created.id)
    return TenantCreated.model_validate(created, from_attributes=True)


@router.get("/tenants", summary="List tenants by id (cursor pagination)", responses=error_responses(422))
async def list_tenants(
    session: SessionDep, limit: LimitQuery = DEFAULT_PAGE_LIMIT, cursor: CursorQuery = None
) -> Page[TenantRead]:
    after_id = cursor_position(cursor, str, boxed=True)
    rows = await TenantRepository(session).list_tenants(after_id=after_id, limit=limit + 1)
    return page_of(rows, limit, lambda row: TenantRead.model_validate(row, from_attributes=True), lambda row: [row.id])


@router.get("/tenants/{tenant_id}", summary="Read one tenant", responses=error_responses(404))
async def get_tenant(tenant_id: TenantIdPath, session: SessionDep) -> TenantRead:
    return TenantRead.model_validate(await TenantRepository(session).get_tenant(tenant_id), from_attributes=True)


@router.delete(
    "/tenants/{tenant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a tenant with all its data (configuration, customers, ledger, lists, logs, messages)",
    responses=error_responses(404),
)
async def delete_tenant(tenant_id: TenantIdPath, session: SessionDep) -> None:
    await TenantRepository(session).delete_tenant(tenant_id)
    await session.commit()
    logger.info("tenant %s deleted", tenant_id)


@router.post(
    "/tenants/{tenant_id}/engine-key/rotate",
    summary="Issue a new engine API key; the previous key stops working",
    responses=error_responses(404),
)
async def rotate_engine_key(tenant_id: TenantIdPath, session: SessionDep) -> EngineKeyRead:
    engine_api_key = await TenantRepository(session).rotate_engine_key(tenant_id)
    await session.commit()
    logger.info("tenant %s: engine key rotated", tenant_id)
    return EngineKeyRead(engine_api_key=engine_api_key)
