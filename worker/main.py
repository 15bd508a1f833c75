"""The worker process: process resources built once, and three peers running side by side until
SIGINT/SIGTERM: the Firehose consumers (worker.inbound.consumer; FIREHOSE_BATCHES_IN_FLIGHT loops), the spool mover
(worker.spool_mover) and arq's Worker (outbound delivery kicks and crons).

arq's Worker exits when it loses Redis (python-arq/arq issues 386, 435, 498), including at
start-up. run_worker therefore runs one arq Worker at a time and, when one dies of a connection
error, closes it without needing Redis and starts a fresh one after a short, growing delay
(shared.transient.retrying). Only the arq Worker restarts: the engine, config cache, HTTP client
and the consumer live on (the consumer and the mover wait out Redis by themselves). PostgreSQL
outages never stop the worker: jobs and batches that cannot reach it are retried.

Crashed work: Firehose claims are owned by this process's heartbeat (shared.queues.liveness) and
taken up within ~4 s of a crash. arq marks a started job "in progress" with a key that expires
after the longest job timeout + 10 s (arq-wide, so one long cron job would make every job wait that
long after a crash). Here the key is a lease instead: IN_PROGRESS_LEASE_SECONDS long and renewed
every LEASE_RENEWAL_SECONDS for the jobs a live worker is running, so a job cut off by a crashed
worker is taken up again within the lease (40 s, under the contract's 60 s); arq jobs are only
delivery kicks and crons. SIGINT/SIGTERM: no new work is taken, running jobs and the batch in hand
get JOB_COMPLETION_WAIT_SECONDS to finish, the rest are cancelled (and re-run later: every job is
idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import signal
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.cron import CronJob
from arq.worker import Worker

from shared.logging import get_logger
from shared.observability.tracing import configure_tracing_from_environment
from shared.observability.worker_metrics import WorkerMetrics
from shared.queues.firehose import FirehoseQueue
from shared.queues.jobs import JobQueue, deserialize_job, serialize_job
from shared.settings import Settings
from shared.tasks import cancel_and_wait
from shared.transient import RetryDelays, call_retrying, is_transient_queue_error
from worker.context import CONTEXT_KEY, WorkerContext
from worker.inbound.consumer import ConsumerTask, FirehoseConsumer
from worker.jobs import CRON_JOBS, JOB_FUNCTIONS
from worker.resources import WorkerResources, create_worker_redis
from worker.spool_mover import SpoolMover

logger = get_logger(__name__)

JOB_COMPLETION_WAIT_SECONDS = 20
# Firehose batches a worker applies at once (each a consumer loop of its own, one transaction each):
# while one batch waits on PostgreSQL (its round trips, the commit's WAL flush), the next is claimed
# and planned. Batches of one worker then overlap as those of two workers always could (the same
# claims, unique keys and lock order keep them exactly-once and deadlock-safe).
FIREHOSE_BATCHES_IN_FLIGHT = 2
DEFAULT_JOB_TIMEOUT_SECONDS = 30
IN_PROGRESS_LEASE_SECONDS = 40
LEASE_RENEWAL_SECONDS = 10
MAX_CONCURRENT_JOBS = 20
POLL_DELAY_SECONDS = 0.05
RESTART_DELAYS = RetryDelays(first_delay_seconds=0.5, max_delay_seconds=2.0)


def worker_cron_jobs(queue_name: str) -> list[CronJob]:
    """Fresh copies of the registered cron jobs for one worker, named after its queue. arq derives
    a cron run's job id from the name and the run time, and those ids must differ between
    deployments (or test runs) sharing one Redis, or one would swallow the other's runs; and arq
    keeps the schedule on the CronJob object, which workers of one process must not share."""
    return [
        dataclasses.replace(
            job,
            name=f"{queue_name}:{job.name}",
            job_id=f"{queue_name}:{job.job_id}" if job.job_id else None,
            next_run=None,
        )
        for job in CRON_JOBS
    ]


def build_worker(
    settings: Settings,
    *,
    resources: WorkerResources | None = None,
    burst: bool = False,
    handle_signals: bool = True,
    max_jobs: int = MAX_CONCURRENT_JOBS,
) -> BridgeWorker:
    """An arq Worker bound to our queue, serializer, jobs and start-up/shut-down hooks. With
    `resources` (run_worker) it uses the process's; without, it builds its own at start-up and
    closes them at shut-down. A burst worker (tests, one-off drains) first applies everything in
    the Firehose queue, then runs arq's queue until it is empty."""

    lease = InProgressLease()
    owned: list[WorkerResources] = []

    async def on_startup(ctx: dict[str, Any]) -> None:
        lease.start(worker)
        if resources is None:
            owned.append(await WorkerResources.open(settings))
        process = resources or owned[0]
        ctx[CONTEXT_KEY] = WorkerContext(
            settings=settings,
            engine=process.engine,
            sessionmaker=process.sessionmaker,
            tenant_configs=process.tenant_configs,
            http=process.http,
            queue=JobQueue(ctx["redis"], settings.queue_name),
            heartbeat=process.heartbeat,
        )
        if burst:
            queue = FirehoseQueue(ctx["redis"], settings.queue_name)
            await SpoolMover(process.sessionmaker, queue).move_all()
            await FirehoseConsumer(
                queue, process.sessionmaker, process.tenant_configs, heartbeat=process.heartbeat
            ).drain()

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await lease.stop()
        ctx.pop(CONTEXT_KEY, None)
        while owned:
            await owned.pop().close()

    worker = BridgeWorker(
        functions=JOB_FUNCTIONS or [_noop],
        cron_jobs=worker_cron_jobs(settings.queue_name) or None,
        queue_name=settings.queue_name,
        redis_pool=create_worker_redis(settings),
        burst=burst,
        handle_signals=handle_signals,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        job_completion_wait=JOB_COMPLETION_WAIT_SECONDS,
        job_timeout=DEFAULT_JOB_TIMEOUT_SECONDS,
        max_jobs=max_jobs,
        poll_delay=POLL_DELAY_SECONDS,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
    )
    worker.in_progress_timeout_s = IN_PROGRESS_LEASE_SECONDS  # what arq sets the key to at start
    return worker


class BridgeWorker(Worker):
    """arq's Worker, with one change for burst workers (tests, one-off drains): they start only the
    cron runs due when they start. arq would otherwise keep scheduling the next run of every cron
    job, and with a cron running every second the queue would never be empty for a burst worker
    to stop."""

    _burst_cron_started = False

    async def run_cron(self, n: datetime, delay: float, num_windows: int = 2) -> None:
        if not self.burst:
            await super().run_cron(n, delay, num_windows)
            return
        if self._burst_cron_started:
            return
        self._burst_cron_started = True
        # A window of a millisecond: start-up runs and overdue runs, nothing deferred.
        await super().run_cron(n, 0.0005, 2)


class InProgressLease:
    """Keeps the "in progress" keys of the jobs a worker is running alive, IN_PROGRESS_LEASE_SECONDS
    at a time, so they expire soon after the worker dies rather than after the job timeout."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self, worker: Worker) -> None:
        self._task = asyncio.ensure_future(self._renew_forever(worker))

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _renew_forever(self, worker: Worker) -> None:
        lease_ms = IN_PROGRESS_LEASE_SECONDS * 1000
        while True:
            await asyncio.sleep(LEASE_RENEWAL_SECONDS)
            running = list(worker.job_tasks)  # jobs executing right now (finished ones are removed)
            if not running:
                continue
            try:
                async with worker.pool.pipeline(transaction=False) as pipe:
                    for job_id in running:
                        pipe.pexpire(in_progress_key_prefix + job_id, lease_ms)
                    await pipe.execute()
            except Exception as exc:  # Redis is gone: run_worker restarts the worker
                logger.debug("job_lease_renewal_failed", error=exc.__class__.__name__)


async def _noop(ctx: dict[str, Any]) -> None:
    """Placeholder so a worker with no registered jobs can still start."""


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None, handle_signals: bool = True) -> None:
    """Run until SIGINT/SIGTERM (or until `stop` is set); survive Redis and PostgreSQL outages,
    also at start-up."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    configure_tracing_from_environment("loyalty-bridge-worker")
    metrics = WorkerMetrics(settings)  # METRICS_PORT, alive across arq restarts
    await metrics.start()
    resources = await WorkerResources.open(settings)
    # What start-up built lives as long as the process: keep it out of the cyclic GC's full scans
    # (the proxy does the same; it removed ~100 ms pauses there).
    gc.freeze()
    queue = FirehoseQueue(resources.redis, settings.queue_name)
    consumers = [
        ConsumerTask(
            FirehoseConsumer(queue, resources.sessionmaker, resources.tenant_configs, heartbeat=resources.heartbeat),
            stop,  # stops with arq, side by side: each finishes its work in hand within the same wait
        )
        for _ in range(FIREHOSE_BATCHES_IN_FLIGHT)
    ]
    for consumer in consumers:
        consumer.start()
    spool_mover = asyncio.create_task(SpoolMover(resources.sessionmaker, queue).run(stop), name="spool-mover")
    try:
        await _run_arq_until_stopped(settings, resources, stop)
    finally:
        stop.set()
        await asyncio.gather(*(consumer.stop(JOB_COMPLETION_WAIT_SECONDS) for consumer in consumers))
        await spool_mover
        await resources.close()
        await metrics.stop()
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _run_arq_until_stopped(settings: Settings, resources: WorkerResources, stop: asyncio.Event) -> None:
    """Run arq Workers one after the other until `stop`: a fresh one after each Redis loss."""

    async def run_one_worker() -> None:
        if not stop.is_set():  # else stopped while waiting to restart
            await _run_once(build_worker(settings, resources=resources, handle_signals=False), stop)

    try:
        await call_retrying(
            "arq worker", run_one_worker, retry_on=is_transient_queue_error, delays=RESTART_DELAYS, stop=stop
        )
    except Exception as error:
        if not (stop.is_set() and is_transient_queue_error(error)):
            raise


async def _run_once(worker: Worker, stop: asyncio.Event) -> None:
    """Run one arq Worker until a stop request (graceful); raises the error of a lost Redis."""
    main = asyncio.ensure_future(worker.main())
    worker.main_task = main  # arq's shutdown ends the worker by cancelling this task
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({main, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not main.done():
        # Stop taking jobs, give running ones JOB_COMPLETION_WAIT_SECONDS, then cancel main.
        worker.handle_sig_wait_for_completion(signal.SIGTERM)
        await asyncio.wait({main})
        if not main.cancelled() and main.exception() is not None:
            logger.warning("worker_failed_while_stopping", error=repr(main.exception()))
        await _close(worker)
        return
    error = None if main.cancelled() else main.exception()
    await _close(worker)
    if error is not None:
        if is_transient_queue_error(error):
            logger.warning("worker_lost_redis", error=f"{error.__class__.__name__}: {error}")
        raise error


async def _close(worker: Worker) -> None:
    """Like arq's Worker.close(), but also when Redis is gone (arq's starts with a Redis call and
    skips the shut-down hook when that fails)."""
    for task in worker.tasks.values():  # jobs that died with the connection: their errors are seen
        if task.done() and not task.cancelled():
            task.exception()
    running = [task for task in worker.tasks.values() if not task.done()]
    if running:
        _, unfinished = await asyncio.wait(running, timeout=JOB_COMPLETION_WAIT_SECONDS)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    redis: ArqRedis | None = worker._pool  # arq has no public "connected pool, if any"
    if redis is not None:
        with contextlib.suppress(Exception):
            await redis.delete(worker.health_check_key)
    if worker.on_shutdown is not None:
        try:
            await worker.on_shutdown(worker.ctx)
        except Exception:
            logger.exception("worker_shutdown_hook_failed")
    if redis is not None:
        with contextlib.suppress(Exception):
            await redis.close(close_connection_pool=True)
        worker._pool = None


__all__ = ["build_worker", "run_worker"]
