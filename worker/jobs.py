"""Thin arq jobs: unpack ctx, open a session scope, delegate to a service.

`JOB_FUNCTIONS` and `CRON_JOBS` are what worker/main.py registers.
"""

from __future__ import annotations

from typing import Any

from arq.cron import CronJob
from arq.worker import Function

JOB_FUNCTIONS: list[Function] = []
CRON_JOBS: list[CronJob] = []

__all__ = ["CRON_JOBS", "JOB_FUNCTIONS", "Any"]
