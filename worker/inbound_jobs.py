"""arq jobs: inbound. Thin: unpack ctx, hand the request to worker.inbound_service.

Timing (see worker.main): process_firehose may run FIREHOSE_JOB_TIMEOUT_SECONDS; arq keeps its
"in progress" key for the longest job timeout + 10 s, so a job cut off by a crashed worker is
taken up again by another worker within that time (40 s, under the contract's 60 s).
While PostgreSQL is unreachable the job is retried with growing delays (1 s doubling to 30 s),
FIREHOSE_MAX_TRIES times: about 17 minutes of outage before arq gives the job up.
"""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry
from arq.cron import CronJob
from arq.worker import Function, func

from shared.queue import JobName
from worker.context import worker_context
from worker.inbound_failures import DatabaseUnavailable
from worker.inbound_service import InboundJob, process_inbound_job

logger = logging.getLogger(__name__)

FIREHOSE_JOB_TIMEOUT_SECONDS = 30
FIREHOSE_MAX_TRIES = 40
RETRY_FIRST_DELAY_SECONDS = 1.0
RETRY_MAX_DELAY_SECONDS = 30.0


def retry_delay_seconds(job_try: int) -> float:
    """Delay before try `job_try + 1` of a job that found PostgreSQL unavailable."""
    return float(min(RETRY_FIRST_DELAY_SECONDS * 2 ** (job_try - 1), RETRY_MAX_DELAY_SECONDS))


async def process_firehose(ctx: dict[str, Any], tenant_id: str, body: str, received_at_ms: int) -> str:
    """Apply one Firehose request (the proxy enqueued it with its priority)."""
    context = worker_context(ctx)
    job = InboundJob(tenant_id=tenant_id, body=body, received_at_ms=received_at_ms)
    try:
        return await process_inbound_job(context.sessionmaker, context.tenant_configs, job)
    except DatabaseUnavailable as exc:
        job_try = int(ctx.get("job_try", 1))
        if job_try >= FIREHOSE_MAX_TRIES:
            logger.error("giving up a firehose request of tenant %s after %d tries: %s", tenant_id, job_try, exc)
            raise
        delay = retry_delay_seconds(job_try)
        logger.warning("database unavailable (%s); firehose request retried in %.0fs", exc, delay)
        raise Retry(defer=delay) from exc


FUNCTIONS: list[Function] = [
    func(
        process_firehose,
        name=JobName.PROCESS_FIREHOSE.value,
        timeout=FIREHOSE_JOB_TIMEOUT_SECONDS,
        max_tries=FIREHOSE_MAX_TRIES,
        # Durable once-only processing is processed_request's job; a result in Redis would only
        # hold a copy of the body for an hour.
        keep_result=0,
    )
]
CRON_JOBS: list[CronJob] = []
