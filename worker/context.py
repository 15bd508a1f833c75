"""Process-wide resources of the worker, built in on_startup and kept in arq's ctx."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.queues.jobs import JobQueue
from shared.queues.liveness import Heartbeat
from shared.settings import Settings
from shared.tenants.config import TenantConfigCache
from worker.outbound.pacing import AccountPacers

CONTEXT_KEY = "bridge"


@dataclass
class WorkerContext:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    tenant_configs: TenantConfigCache
    http: httpx.AsyncClient
    queue: JobQueue
    # The process's liveness heartbeat (shared/queues/liveness.py), when one runs: outbound leases
    # record its worker id, so they are released at once if this process dies.
    heartbeat: Heartbeat | None = None
    # Per mParticle account pacing of S2S requests, shared by every delivery job of the process.
    outbound_pacers: AccountPacers = field(default_factory=AccountPacers)


def worker_context(ctx: dict[str, Any]) -> WorkerContext:
    """The typed resources inside arq's ctx dict."""
    context: WorkerContext = ctx[CONTEXT_KEY]
    return context
