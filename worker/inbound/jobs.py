"""arq jobs: inbound. There are none: Firehose requests do not go through arq.

arq spends about a dozen Redis commands (~1 ms of worker CPU, measured) on every job, more than
applying a request costs. The proxy therefore queues Firehose requests in their own priority queue
(shared.queues.firehose) and every worker runs a FirehoseConsumer beside arq's loop
(worker.inbound.consumer, started by worker.main), which applies them by batches.
"""

from __future__ import annotations

from arq.cron import CronJob
from arq.worker import Function

FUNCTIONS: list[Function] = []
CRON_JOBS: list[CronJob] = []
