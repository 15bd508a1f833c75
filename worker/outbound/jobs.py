"""arq jobs: outbound delivery. Thin: unpack ctx, build the service from pooled resources, call it.

`deliver_outbound(tenant_id)` is enqueued by the outbound API (a kick) and by `dispatch_outbound`,
a cron job running every second: it finds tenants with due messages (new ones, resends, expired
leases) in PostgreSQL, so delivery survives worker and Redis restarts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from arq import cron, func
from arq.cron import CronJob
from arq.worker import Function

from shared.logging import bind_log_context, get_logger
from shared.queues.jobs import JobName
from worker.context import WorkerContext, worker_context
from worker.outbound.leases import release_leases_of_dead_workers
from worker.outbound.mparticle_client import MParticleClient
from worker.outbound.service import OutboundDelivery

logger = get_logger(__name__)

DISPATCH_TIMEOUT_SECONDS = 30
# A run stops claiming after MAX_RUN_SECONDS; this leaves room for its last round of sends. It
# stays under 50 s so that a crashed worker's job is re-run within a minute.
DELIVERY_TIMEOUT_SECONDS = 45


async def _lease_owner(context: WorkerContext) -> str | None:
    """The worker id leases record: only while a heartbeat proves this process alive (started
    here if the process has one that is not beating yet)."""
    heartbeat = context.heartbeat
    if heartbeat is None:
        return None
    try:
        await heartbeat.start()  # no-op once it beats
    except Exception as error:  # no Redis: leases without owner, ended by their expiry
        logger.warning("outbound_heartbeat_not_started", error=error.__class__.__name__)
    return heartbeat.worker_id if heartbeat.running else None


def _delivery(context: WorkerContext, lease_owner: str | None = None) -> OutboundDelivery:
    return OutboundDelivery(
        sessionmaker=context.sessionmaker,
        client=MParticleClient(context.http, timeout_seconds=context.settings.outbound_timeout_seconds),
        tenant_configs=context.tenant_configs,
        settings=context.settings,
        pacers=context.outbound_pacers,
        lease_owner=lease_owner,
    )


async def deliver_outbound(ctx: dict[str, Any], tenant_id: str) -> None:
    """Deliver one tenant's due outbound messages."""
    bind_log_context(tenant_id=tenant_id)  # arq runs each job in a task of its own
    context = worker_context(ctx)
    run = await _delivery(context, await _lease_owner(context)).deliver_tenant(tenant_id)
    counts = run.as_log_fields()
    if any(counts.values()):
        logger.info("outbound_run_finished", **counts)


async def dispatch_outbound(ctx: dict[str, Any]) -> None:
    """Every second: release the leases of dead workers, then enqueue a delivery job for each
    tenant that has a due message."""
    context = worker_context(ctx)
    # Not right after a Redis outage: live workers' heartbeat keys may not be back yet.
    if context.heartbeat is None or context.heartbeat.judges_liveness():
        await release_leases_of_dead_workers(
            context.sessionmaker, context.queue.redis, context.queue.queue_name, datetime.now(UTC)
        )
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
