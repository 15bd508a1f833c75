"""The loyalty engine's authentication: `Authorization: Bearer <engine_api_key of the tenant>`.

401 without a key or with a key no tenant has; 403 with another tenant's key (also when the named
tenant does not exist, so a wrong key learns nothing about which tenants exist); 409 NOT_CONNECTED
when the tenant has no outbound settings. Keys are known by their SHA-256 only.

The check runs on the process's tenant configuration cache, so an accepted call costs no query
here. A key the cache does not know, or whose tenant it holds as disconnected, is looked up in
PostgreSQL (grouped and rate limited) before a 401 or 409, so a new or rotated key, or a tenant
just reconnected, works at once. The store re-checks the key and the connection in the statement
that writes the message (AcceptedMessageStore): a key replaced, a tenant deleted or disconnected
since the cache last saw them never gets a 202.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from proxy.outbound.outbox_writer import OutboxWriter
from proxy.rate_limit import enforce_outbound_rate_limit
from proxy.state import ProxyState
from shared.credentials import hash_key
from shared.errors import BridgeError, Conflict, ErrorCode, Forbidden, ServiceUnavailable, Unauthorized
from shared.tenants.config import TenantConfig, TenantConfigCache


@dataclass(frozen=True)
class EngineCaller:
    """An authenticated engine call: the calling tenant's configuration, the hash of the key it
    used, and the process resources that serve it."""

    tenant: TenantConfig
    engine_key_hash: str
    tenant_configs: TenantConfigCache
    outbox: OutboxWriter

    async def refusal(self) -> BridgeError:
        """Why the store refused this caller's message: reload the key's tenant, check again.

        The answer is what a fresh check gives (401, 403 or 409); when the fresh check passes the
        configuration changed twice meanwhile, and the engine is asked to retry.
        """
        try:
            await self.tenant_configs.reload_engine_keys([self.engine_key_hash])
        except Exception:
            return ServiceUnavailable(
                "the engine API key could not be checked: the database is unavailable",
                code=ErrorCode.DATABASE_UNAVAILABLE,
            )
        try:
            check_engine_caller(self.tenant_configs.find_by_engine_key(self.engine_key_hash), self.tenant.id)
        except BridgeError as error:
            return error
        return ServiceUnavailable(
            "the tenant's configuration changed while the call was stored; retry", code=ErrorCode.DATABASE_UNAVAILABLE
        )


def check_engine_caller(config: TenantConfig | None, tenant_id: str) -> TenantConfig:
    """The tenant `config` if its key may call as `tenant_id`; 401, 403 or 409 otherwise."""
    if config is None:
        raise Unauthorized("invalid engine API key")
    if not hmac.compare_digest(config.id.encode(), tenant_id.encode()):
        raise Forbidden("this engine API key belongs to another tenant")
    if config.outbound is None:
        raise Conflict(
            f"tenant {tenant_id!r} is not connected: its outbound settings are missing", code=ErrorCode.NOT_CONNECTED
        )
    return config


def bearer_key(request: Request) -> str:
    """The key of an `Authorization: Bearer <key>` header ("" when there is none)."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


async def authenticate_engine_caller(request: Request, tenant_id: str) -> EngineCaller:
    """The tenant calling as `tenant_id`, authenticated by its engine key (401/403/409 otherwise)."""
    key = bearer_key(request)
    if not key:
        raise Unauthorized("missing engine API key (Authorization: Bearer <engine_api_key>)")
    key_hash = hash_key(key)
    state: ProxyState = request.app.state.proxy
    try:
        config = await state.tenant_configs.resolve_engine_key(key_hash)
        if config is not None and config.outbound is None:
            # Maybe reconnected since the cache last looked: check before a 409 (rate limited).
            config = await state.tenant_configs.look_up_engine_key(key_hash)
    except Exception as exc:  # only a cache miss (or a 409 about to be sent) reads the database
        raise ServiceUnavailable(
            "the engine API key could not be checked: the database is unavailable", code=ErrorCode.DATABASE_UNAVAILABLE
        ) from exc
    caller = EngineCaller(check_engine_caller(config, tenant_id), key_hash, state.tenant_configs, state.outbox)
    enforce_outbound_rate_limit(request, caller.tenant.id)  # 429 once the tenant's bucket is empty
    return caller
