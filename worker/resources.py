"""What a worker process builds once and keeps until it stops: database engine, tenant config cache,
S2S HTTP client, a Redis client of its own and the liveness heartbeat. arq Workers restarted after
a Redis outage reuse them (worker.main.run_worker)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import httpx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.db import create_engine, create_sessionmaker
from shared.queues.jobs import create_redis
from shared.queues.liveness import Heartbeat
from shared.settings import Settings
from shared.tenants.config import TenantConfigCache
from worker.outbound.safe_transport import create_s2s_client

REDIS_CONNECT_TIMEOUT_SECONDS = 2.0
# No command the worker sends blocks in Redis for long (BLPOP waits 1 s), so a reply slower than
# this means a hung server.
REDIS_SOCKET_TIMEOUT_SECONDS = 10.0


def create_worker_redis(settings: Settings) -> ArqRedis:
    """A Redis client with the worker's timeouts (it reconnects by itself after an outage)."""
    return create_redis(
        settings,
        connect_timeout_seconds=REDIS_CONNECT_TIMEOUT_SECONDS,
        socket_timeout_seconds=REDIS_SOCKET_TIMEOUT_SECONDS,
    )


@dataclass
class WorkerResources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    tenant_configs: TenantConfigCache
    http: httpx.AsyncClient
    redis: ArqRedis
    heartbeat: Heartbeat

    @classmethod
    async def open(cls, settings: Settings) -> WorkerResources:
        """Build them; never fails on an outage (the config cache loads when PostgreSQL answers,
        Redis is connected on first use)."""
        engine = create_engine(settings, application_name="loyalty-bridge-worker")
        sessionmaker = create_sessionmaker(engine)
        tenant_configs = TenantConfigCache(sessionmaker, settings.config_cache_seconds)
        await tenant_configs.start()
        redis = create_worker_redis(settings)
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            tenant_configs=tenant_configs,
            http=create_s2s_client(settings),  # SSRF-vetted, no redirects (worker/outbound/safe_transport.py)
            redis=redis,
            heartbeat=Heartbeat(redis, settings.queue_name),
        )

    async def close(self) -> None:
        """Release everything (the heartbeat key is removed: leftover claims are released at once)."""
        await self.heartbeat.stop()
        await self.tenant_configs.stop()
        await self.http.aclose()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        await self.engine.dispose()
