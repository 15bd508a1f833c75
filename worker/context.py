"""Process-wide resources of the worker, built in on_startup and kept in arq's ctx."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.queues.jobs import JobQueue
from shared.settings import Settings
from shared.tenants.config import TenantConfigCache

CONTEXT_KEY = "bridge"


@dataclass
class WorkerContext:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    tenant_configs: TenantConfigCache
    http: httpx.AsyncClient
    queue: JobQueue


def worker_context(ctx: dict[str, Any]) -> WorkerContext:
    """The typed resources inside arq's ctx dict."""
    context: WorkerContext = ctx[CONTEXT_KEY]
    return context
