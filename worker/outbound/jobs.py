"""arq jobs: outbound delivery. Thin: unpack ctx, build the service from pooled resources, call it.

`deliver_outbound(tenant_id)` is enqueued by the outbound API (a kick) and by `dispatch_outbound`,
a cron job running every second: it finds tenants with due messages (new ones, resends, expired
leases) in PostgreSQL, so delivery survives worker and Redis restarts.
"""

from __future__ import annotations

import logging
from typing import Any

from arq import cron, func
from arq.cron import CronJob
from arq.worker import Function

from shared.queues.jobs import JobName
from worker.context import WorkerContext, worker_context
from worker.outbound.mparticle_client import MParticleClient
from worker.outbound.service import OutboundDelivery

logger = logging.getLogger(__name__)

DISPATCH_TIMEOUT_SECONDS = 30
# A run stops claiming after MAX_RUN_SECONDS; this leaves room for its last round of sends. It
# stays under 50 s so that a crashed worker's job is re-run within a minute.
DELIVERY_TIMEOUT_SECONDS = 45


def _delivery(context: WorkerContext) -> OutboundDelivery:
    return OutboundDelivery(
        sessionmaker=context.sessionmaker,
        client=MParticleClient(context.http, timeout_seconds=context.settings.outbound_timeout_seconds),
        tenant_configs=context.tenant_configs,
        settings=context.settings,
    )


async def deliver_outbound(ctx: dict[str, Any], tenant_id: str) -> None:
    """Deliver one tenant's due outbound messages."""
    run = await _delivery(worker_context(ctx)).deliver_tenant(tenant_id)
    if run.delivered or run.retrying or run.failed or run.cancelled:
        logger.info(
            "outbound run tenant_id=%s delivered=%d retrying=%d failed=%d cancelled=%d",
            tenant_id,
            run.delivered,
            run.retrying,
            run.failed,
            run.cancelled,
        )


async def dispatch_outbound(ctx: dict[str, Any]) -> None:
    """Every second: enqueue a delivery job for each tenant that has a due message."""
    context = worker_context(ctx)
    await _delivery(context).dispatch_due(context.queue)


FUNCTIONS: list[Function] = [
    func(deliver_outbound, name=JobName.DELIVER_OUTBOUND.value, keep_result=0, timeout=DELIVERY_TIMEOUT_SECONDS)
]
CRON_JOBS: list[CronJob] = [
    cron(
        dispatch_outbound,
        second=None,  # every second
        run_at_startup=True,
        unique=True,
        timeout=DISPATCH_TIMEOUT_SECONDS,
        keep_result=0,
    )
]
