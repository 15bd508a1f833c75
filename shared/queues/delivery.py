"""The DELIVER_OUTBOUND job of a tenant, enqueued by the outbound API (a kick) and by the worker's
once-a-second dispatcher (the schedule that drives resends).

Job ids are per tenant and per second: kicks arriving together collapse into one job, while a job
id left behind by a killed worker never blocks a tenant for longer than that second. Kicks go
first in the queue (priority 0): a delivery job only claims work already committed in PostgreSQL.
"""

from __future__ import annotations

from shared.queues.jobs import MIN_PRIORITY, JobName, QueuedJob

KICK_WINDOW_SECONDS = 1.0


def delivery_job(queue_name: str, tenant_id: str, now_epoch_seconds: float) -> QueuedJob:
    """The job that delivers `tenant_id`'s due messages."""
    window = int(now_epoch_seconds // KICK_WINDOW_SECONDS)
    return QueuedJob(
        function=JobName.DELIVER_OUTBOUND,
        args=(tenant_id,),
        job_id=f"{queue_name}:outbound:{tenant_id}:{window}",
        priority=MIN_PRIORITY,
    )
