"""Every arq function and cron job the worker registers, gathered from the job modules."""

from __future__ import annotations

from arq.cron import CronJob
from arq.worker import Function

from worker.inbound import jobs as inbound_jobs
from worker.maintenance import jobs as maintenance_jobs
from worker.outbound import jobs as outbound_jobs

JOB_FUNCTIONS: list[Function] = [*inbound_jobs.FUNCTIONS, *outbound_jobs.FUNCTIONS, *maintenance_jobs.FUNCTIONS]
CRON_JOBS: list[CronJob] = [*inbound_jobs.CRON_JOBS, *outbound_jobs.CRON_JOBS, *maintenance_jobs.CRON_JOBS]
