"""arq cron jobs: retention. Thin: unpack ctx, call a service (which owns its batch transactions).

Both purges run hourly and once when a worker starts. Cron job ids are unique per scheduled time,
so several workers enqueue each run once; overlapping runs skip each other's locked rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from arq.cron import CronJob, cron
from arq.worker import Function

from shared.queues.jobs import JobName
from worker.context import worker_context
from worker.maintenance.service import purge_error_log, purge_processed_requests

# Minute past each hour the purges run at (away from the top of the hour, when other crons fire).
PURGE_MINUTE = 17
# A purge of a large backlog continues across runs: every finished batch stays deleted.
PURGE_TIMEOUT_SECONDS = 1800


async def purge_expired_error_log(ctx: dict[str, Any]) -> int:
    """Delete incoming error log entries older than ERROR_LOG_RETENTION_DAYS."""
    context = worker_context(ctx)
    result = await purge_error_log(
        context.sessionmaker, retention_days=context.settings.error_log_retention_days, now=datetime.now(UTC)
    )
    return result.deleted


async def purge_expired_processed_requests(ctx: dict[str, Any]) -> int:
    """Forget applied Firehose request ids older than the idempotency window (30 days)."""
    context = worker_context(ctx)
    result = await purge_processed_requests(context.sessionmaker, now=datetime.now(UTC))
    return result.deleted


FUNCTIONS: list[Function] = []
CRON_JOBS: list[CronJob] = [
    cron(
        purge_expired_error_log,
        name=JobName.PURGE_ERROR_LOG,
        minute=PURGE_MINUTE,
        run_at_startup=True,
        timeout=PURGE_TIMEOUT_SECONDS,
    ),
    cron(
        purge_expired_processed_requests,
        name=JobName.PURGE_PROCESSED_REQUESTS,
        minute=PURGE_MINUTE,
        run_at_startup=True,
        timeout=PURGE_TIMEOUT_SECONDS,
    ),
]
