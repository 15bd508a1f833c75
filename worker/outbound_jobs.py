"""arq jobs: outbound (to be implemented). Thin: unpack ctx, open a session, call a service."""

from __future__ import annotations

from arq.cron import CronJob
from arq.worker import Function

FUNCTIONS: list[Function] = []
CRON_JOBS: list[CronJob] = []
