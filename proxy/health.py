"""Liveness and readiness (CONTRACT §7)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from proxy.dependencies import StateDep
from proxy.responses import JSONBytesResponse

router = APIRouter(tags=["health"])

READINESS_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", summary="The process is alive (checks no dependency)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="PostgreSQL and Redis are reachable",
    responses={503: {"description": "a dependency is unreachable"}},
)
async def readyz(state: StateDep) -> JSONBytesResponse:
    async def database() -> None:
        async with state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def redis() -> None:
        await state.redis.ping()

    checks: dict[str, Any] = {}
    for name, check in (("database", database), ("redis", redis)):
        try:
            await asyncio.wait_for(check(), READINESS_TIMEOUT_SECONDS)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable ({exc.__class__.__name__})"
    ready = all(value == "ok" for value in checks.values())
    return JSONBytesResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )
