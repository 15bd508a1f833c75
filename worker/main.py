"""The worker process: an arq Worker with our resources, kept alive through Redis outages."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from arq.worker import Worker

from shared.db import create_engine, create_sessionmaker
from shared.queue import JobQueue, create_arq_pool, deserialize_job, redis_settings, serialize_job
from shared.settings import Settings
from shared.tenant_config import TenantConfigCache
from worker.context import CONTEXT_KEY, WorkerContext, worker_context
from worker.jobs import CRON_JOBS, JOB_FUNCTIONS

logger = logging.getLogger(__name__)

# Seconds a SIGTERM waits for running jobs before they are cancelled (and re-queued by arq).
JOB_COMPLETION_WAIT_SECONDS = 20
RECONNECT_DELAY_SECONDS = 1.0
MAX_CONCURRENT_JOBS = 20


def build_worker(settings: Settings, *, burst: bool = False, handle_signals: bool = True) -> Worker:
    """An arq Worker bound to our queue, serializer, jobs and start-up/shut-down hooks."""

    async def on_startup(ctx: dict[str, Any]) -> None:
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

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if CONTEXT_KEY not in ctx:
            return
        context = worker_context(ctx)
        await context.tenant_configs.stop()
        await context.http.aclose()
        await context.engine.dispose()

    return Worker(
        functions=JOB_FUNCTIONS or [_noop],
        cron_jobs=CRON_JOBS or None,
        queue_name=settings.queue_name,
        redis_settings=redis_settings(settings),
        burst=burst,
        handle_signals=handle_signals,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        job_completion_wait=JOB_COMPLETION_WAIT_SECONDS,
        max_jobs=MAX_CONCURRENT_JOBS,
        poll_delay=0.05,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
    )


async def _noop(ctx: dict[str, Any]) -> None:
    """Placeholder so a worker with no registered jobs can still start."""


async def run_worker(settings: Settings) -> None:
    """Run the worker until SIGINT/SIGTERM; a lost Redis connection restarts it instead of exiting."""
    while True:
        worker = build_worker(settings)
        # arq's SIGINT/SIGTERM handler cancels `worker.main_task`, which only Worker.run() sets.
        worker.main_task = asyncio.ensure_future(worker.main())
        try:
            await worker.main_task
            return
        except asyncio.CancelledError:
            return  # a signal stopped it cleanly (after letting running jobs finish)
        except (TimeoutError, OSError, ConnectionError) as exc:
            logger.warning(
                "worker lost a connection (%s); restarting in %.0fs", exc.__class__.__name__, RECONNECT_DELAY_SECONDS
            )
        except Exception as exc:
            if not _is_connection_error(exc):
                raise
            logger.warning(
                "worker lost Redis (%s); restarting in %.0fs", exc.__class__.__name__, RECONNECT_DELAY_SECONDS
            )
        finally:
            await worker.close()
        await asyncio.sleep(RECONNECT_DELAY_SECONDS)


def _is_connection_error(exc: BaseException) -> bool:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, RedisConnectionError | RedisTimeoutError)


__all__ = ["build_worker", "create_arq_pool", "run_worker"]
