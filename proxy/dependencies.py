"""FastAPI dependencies: process state, database sessions and the admin key check.

All async: FastAPI runs a sync dependency in its thread pool, a hop per request for nothing here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from proxy.state import ProxyState
from shared.credentials import secrets_equal
from shared.errors import Unauthorized
from shared.settings import Settings


async def get_state(request: Request) -> ProxyState:
    state: ProxyState = request.app.state.proxy
    return state


StateDep = Annotated[ProxyState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """A session per request. Routes commit explicitly before answering (durability first);
    anything left uncommitted is rolled back."""
    async with state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="The ADMIN_API_KEY")


async def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless `Authorization: Bearer <ADMIN_API_KEY>` (compared in constant time)."""
    given = credentials.credentials if credentials else None
    if not secrets_equal(given, settings.require_admin_api_key()):
        raise Unauthorized("missing or invalid admin API key")


AdminAuth = Depends(require_admin)
