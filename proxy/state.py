"""Process-wide resources of the proxy, built in the lifespan and kept on app.state."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from proxy.firehose.tokens import InboundTokenCheck
from proxy.outbound.delivery_kicker import DeliveryKicker
from proxy.outbound.outbox_writer import OutboxWriter
from shared.errorlog.deferred import DeferredErrorLog
from shared.queues.jobs import JobQueue
from shared.settings import Settings
from shared.tenants.config import TenantConfigCache


@dataclass
class ProxyState:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: ArqRedis
    queue: JobQueue
    tenant_configs: TenantConfigCache
    # The outbound API's group-commit writer and the kicks it triggers.
    outbox: OutboxWriter
    delivery_kicker: DeliveryKicker
    # Error-log entries PostgreSQL refused during an outage, written once it is back.
    deferred_error_log: DeferredErrorLog
    inbound_tokens: InboundTokenCheck
