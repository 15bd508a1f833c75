"""The worker process: an arq Worker with our resources, kept alive through Redis outages.

arq's Worker exits when it loses Redis (python-arq/arq issues 386, 435, 498), including at
start-up. run_worker therefore runs one Worker at a time and, when one dies of a connection
error, closes it without needing Redis and starts a fresh one after a short, growing delay.
PostgreSQL outages never stop the worker: jobs that cannot reach it are retried (see the jobs).
Firehose requests are not arq jobs: each Worker runs a FirehoseConsumer (worker.inbound.consumer)
beside arq's loop, started in on_startup and stopped (its batch in hand finished) in on_shutdown.

Crashed work: arq marks a started job "in progress" with a key that expires after the longest
job timeout + 10 s (arq-wide, so one long cron job would make every job wait that long after a
crash). Here the key is a lease instead: IN_PROGRESS_LEASE_SECONDS long and renewed every
LEASE_RENEWAL_SECONDS for the jobs a live worker is running, so a job cut off by a crashed worker
is taken up again within the lease (40 s, under the contract's 60 s), whatever the job timeouts.
SIGINT/SIGTERM: no new jobs are taken, running ones get JOB_COMPLETION_WAIT_SECONDS to finish,
the rest are cancelled (and re-run later: every job is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import gc
import logging
import signal
from datetime import datetime
from typing import Any

import httpx
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.cron import CronJob
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.db import create_engine, create_sessionmaker
from shared.queues.firehose import FirehoseQueue
from shared.queues.jobs import JobQueue, create_redis, deserialize_job, serialize_job
from shared.settings import Settings
from shared.tenants.config import TenantConfigCache
from worker.context import CONTEXT_KEY, WorkerContext, worker_context
from worker.inbound.consumer import ConsumerTask, FirehoseConsumer
from worker.jobs import CRON_JOBS, JOB_FUNCTIONS

logger = logging.getLogger(__name__)

JOB_COMPLETION_WAIT_SECONDS = 20
DEFAULT_JOB_TIMEOUT_SECONDS = 30
IN_PROGRESS_LEASE_SECONDS = 40
LEASE_RENEWAL_SECONDS = 10
MAX_CONCURRENT_JOBS = 20
POLL_DELAY_SECONDS = 0.05
RESTART_FIRST_DELAY_SECONDS = 0.5
RESTART_MAX_DELAY_SECONDS = 5.0
REDIS_CONNECT_TIMEOUT_SECONDS = 2.0
# No command the worker sends blocks in Redis, so a reply slower than this means a hung server.
REDIS_SOCKET_TIMEOUT_SECONDS = 10.0


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
    settings: Settings, *, burst: bool = False, handle_signals: bool = True, max_jobs: int = MAX_CONCURRENT_JOBS
) -> BridgeWorker:
    """An arq Worker bound to our queue, serializer, jobs and start-up/shut-down hooks."""

    lease = InProgressLease()
    firehose = _ConsumerHolder()

    async def on_startup(ctx: dict[str, Any]) -> None:
        lease.start(worker)
        engine = create_engine(settings, application_name="loyalty-bridge-worker")
        sessionmaker = create_sessionmaker(engine)
        tenant_configs = TenantConfigCache(sessionmaker, settings.config_cache_seconds)
        await tenant_configs.start()
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.outbound_timeout_seconds),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        ctx[CONTEXT_KEY] = WorkerContext(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            tenant_configs=tenant_configs,
            http=http,
            queue=JobQueue(ctx["redis"], settings.queue_name),
        )
        consumer = FirehoseConsumer(FirehoseQueue(ctx["redis"], settings.queue_name), sessionmaker, tenant_configs)
        if burst:  # a burst worker applies everything queued before arq's own burst run
            await consumer.drain()
        else:
            # What start-up built lives as long as the process: keep it out of the cyclic GC's
            # full scans (the proxy does the same; it removed ~100 ms pauses there).
            gc.freeze()
            firehose.start(consumer)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await firehose.stop(JOB_COMPLETION_WAIT_SECONDS)
        await lease.stop()
        if CONTEXT_KEY not in ctx:
            return
        context = worker_context(ctx)
        del ctx[CONTEXT_KEY]
        await context.tenant_configs.stop()
        await context.http.aclose()
        await context.engine.dispose()

    worker = BridgeWorker(
        functions=JOB_FUNCTIONS or [_noop],
        cron_jobs=worker_cron_jobs(settings.queue_name) or None,
        queue_name=settings.queue_name,
        redis_pool=create_redis(
            settings,
            connect_timeout_seconds=REDIS_CONNECT_TIMEOUT_SECONDS,
            socket_timeout_seconds=REDIS_SOCKET_TIMEOUT_SECONDS,
        ),
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


class _ConsumerHolder:
    """The Firehose consumer of one arq Worker's lifetime (started in on_startup)."""

    def __init__(self) -> None:
        self._task: ConsumerTask | None = None

    def start(self, consumer: FirehoseConsumer) -> None:
        self._task = ConsumerTask(consumer)
        self._task.start()

    async def stop(self, timeout_seconds: float) -> None:
        if self._task is not None:
            await self._task.stop(timeout_seconds)
            self._task = None


class InProgressLease:
    """Keeps the "in progress" keys of the jobs a worker is running alive, IN_PROGRESS_LEASE_SECONDS
    at a time, so they expire soon after the worker dies rather than after the job timeout."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self, worker: Worker) -> None:
        self._task = asyncio.ensure_future(self._renew_forever(worker))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
                logger.debug("could not renew in-progress leases: %s", exc.__class__.__name__)


async def _noop(ctx: dict[str, Any]) -> None:
    """Placeholder so a worker with no registered jobs can still start."""


class _Outcome(enum.Enum):
    STOPPED = "stopped"
    LOST_REDIS = "lost redis"


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None, handle_signals: bool = True) -> None:
    """Run until SIGINT/SIGTERM (or until `stop` is set); survive Redis outages, also at start-up."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    delay = RESTART_FIRST_DELAY_SECONDS
    try:
        while not stop.is_set():
            worker = build_worker(settings, handle_signals=False)
            if await _run_once(worker, stop) is _Outcome.STOPPED:
                return
            logger.warning("worker restarts in %.1fs", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, RESTART_MAX_DELAY_SECONDS)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _run_once(worker: Worker, stop: asyncio.Event) -> _Outcome:
    """Run one arq Worker until a stop request (graceful) or a lost Redis connection."""
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
            logger.warning("worker ended with %r while stopping", main.exception())
        await _close(worker)
        return _Outcome.STOPPED
    error = None if main.cancelled() else main.exception()
    await _close(worker)
    if error is None:
        return _Outcome.STOPPED
    if not is_connection_error(error):
        raise error
    logger.warning("worker lost its Redis connection (%s: %s)", error.__class__.__name__, error)
    return _Outcome.LOST_REDIS


async def _close(worker: Worker) -> None:
    """Like arq's Worker.close(), but also when Redis is gone (arq's starts with a Redis call and
    skips the shut-down hook when that fails)."""
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
            logger.exception("worker shut-down hook failed")
    if redis is not None:
        with contextlib.suppress(Exception):
            await redis.close(close_connection_pool=True)
        worker._pool = None


def is_connection_error(error: BaseException) -> bool:
    """A lost or refused Redis connection (redis-py's own errors, or the socket's)."""
    return isinstance(error, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError)


__all__ = ["build_worker", "run_worker"]
