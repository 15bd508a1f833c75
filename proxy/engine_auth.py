"""The loyalty engine's authentication: `Authorization: Bearer <engine_api_key of the tenant>`.

401 without a key or with a key no tenant has; 403 with another tenant's key (also when the named
tenant does not exist, so a wrong key learns nothing about which tenants exist); 409 NOT_CONNECTED
when the tenant has no outbound settings. The key is looked up by its SHA-256 (the column is
unique) and the tenant ids compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from proxy.dependencies import SessionDep, StateDep
from shared.credentials import hash_key
from shared.errors import Conflict, ErrorCode, Forbidden, Unauthorized
from shared.repositories.outbound_messages import OutboundMessageRepository
from shared.tenant_config import TenantConfig

_engine_bearer = HTTPBearer(auto_error=False, description="The tenant's engine API key", scheme_name="EngineKey")


def _not_connected(tenant_id: str) -> Conflict:
    return Conflict(
        f"tenant {tenant_id!r} is not connected: its outbound settings are missing", code=ErrorCode.NOT_CONNECTED
    )


async def require_engine_tenant(
    tenant_id: Annotated[str, Path(description="the tenant id")],
    state: StateDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_engine_bearer)],
) -> TenantConfig:
    """The calling tenant's configuration snapshot, at least as new as the database's revision."""
    key = credentials.credentials if credentials else ""
    if not key:
        raise Unauthorized("missing engine API key (Authorization: Bearer <engine_api_key>)")
    caller = await OutboundMessageRepository(session).find_engine_caller(hash_key(key))
    if caller is None:
        raise Unauthorized("invalid engine API key")
    if not hmac.compare_digest(caller.tenant_id.encode(), tenant_id.encode()):
        raise Forbidden("this engine API key belongs to another tenant")
    if not caller.connected:
        raise _not_connected(tenant_id)
    config = state.tenant_configs.get(tenant_id)
    if config is None or config.config_revision < caller.config_revision:
        # The cache polls every CONFIG_CACHE_SECONDS; catch up now rather than map with old rules.
        await state.tenant_configs.refresh()
        config = state.tenant_configs.get(tenant_id)
    if config is None or config.outbound is None:
        raise _not_connected(tenant_id)
    return config


EngineTenant = Annotated[TenantConfig, Depends(require_engine_tenant)]
