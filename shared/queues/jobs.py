"""Queue layout, in one place: job names, priority encoding, job ids, serialization and enqueue.

arq has no native priorities: it pops the lowest score (the run-at time in ms) that is due. We
backdate a job's score by its priority, so lower priority values are dequeued first and, within
a priority, arrival order is kept. Jobs are serialized with orjson rather than arq's pickle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from redis.asyncio import ConnectionPool

from shared.settings import Settings

MIN_PRIORITY = 0
MAX_PRIORITY = 1000
# Requests that match no inbound mapping (audiences, unmapped events) go after every mapped one.
UNMAPPED_PRIORITY = MAX_PRIORITY
# One day of backdate per priority level: priority dominates unless a backlog is older than a day.
PRIORITY_STEP_MS = 86_400_000
# How long an enqueued job may wait before arq drops it unrun. Passed explicitly because arq's
# default expiry (24 h minus the backdate) would be negative for backdated scores.
JOB_EXPIRES_MS = 7 * 86_400_000


class JobName(StrEnum):
    """Every arq function name; the proxy enqueues and the worker registers through these.

    Firehose work does not go through arq: see shared/queues/firehose.py."""

    DELIVER_OUTBOUND = "deliver_outbound"
    PURGE_ERROR_LOG = "purge_error_log"
    PURGE_PROCESSED_REQUESTS = "purge_processed_requests"


def priority_score(priority: int, enqueued_at_ms: int) -> int:
    """The arq score for a job of `priority` (0 first … 1000 last) enqueued at `enqueued_at_ms`."""
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be within {MIN_PRIORITY}..{MAX_PRIORITY}, got {priority}")
    return enqueued_at_ms - (MAX_PRIORITY - priority) * PRIORITY_STEP_MS


def firehose_job_id(queue_name: str, tenant_id: str, request_id: str) -> str:
    """Deterministic job id, so a retried Firehose request is not queued twice while known to arq."""
    return f"{queue_name}:firehose:{tenant_id}:{request_id}"


def serialize_job(data: dict[str, Any]) -> bytes:
    """arq job serializer (orjson instead of pickle: nothing in Redis can execute code)."""
    return orjson.dumps(data)


def deserialize_job(data: bytes) -> dict[str, Any]:
    """arq job deserializer, the inverse of serialize_job."""
    result: dict[str, Any] = orjson.loads(data)
    return result


# Atomic "enqueue unless known": one round trip instead of arq's WATCH/EXISTS/MULTI/EXEC.
_ENQUEUE_SCRIPT = """
if redis.call('exists', KEYS[1]) == 1 or redis.call('exists', KEYS[2]) == 1 then
    return 0
end
redis.call('psetex', KEYS[1], ARGV[2], ARGV[1])
redis.call('zadd', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


@dataclass(frozen=True)
class QueuedJob:
    """What to enqueue: an arq function, its arguments, a job id and a priority."""

    function: JobName
    args: tuple[Any, ...]
    job_id: str
    priority: int = UNMAPPED_PRIORITY


class JobQueue:
    """Enqueues arq jobs with priority scores in one Redis round trip each."""

    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self._script = redis.register_script(_ENQUEUE_SCRIPT)

    async def enqueue(self, job: QueuedJob) -> bool:
        """Enqueue `job`; False when a job with that id is already queued or has a result."""
        now_ns = time.time_ns()
        now_ms = now_ns // 1_000_000
        payload = serialize_job({"t": 1, "f": str(job.function), "a": list(job.args), "k": {}, "et": now_ms})
        # The sub-millisecond fraction keeps arrival order among jobs enqueued within the same
        # millisecond (Redis orders equal scores by member, i.e. by job id).
        score = priority_score(job.priority, now_ms) + (now_ns % 1_000_000) / 1_000_000
        added = await self._script(
            keys=[job_key_prefix + job.job_id, result_key_prefix + job.job_id, self.queue_name],
            args=[payload, JOB_EXPIRES_MS, score, job.job_id],
        )
        return bool(added)


def create_redis(settings: Settings, *, connect_timeout_seconds: float, socket_timeout_seconds: float) -> ArqRedis:
    """A lazily connecting ArqRedis on our queue and serializer: a process starts (and later
    recovers) while Redis is down, and a dead or hung server shows up within the timeouts."""
    pool = ConnectionPool.from_url(
        settings.require_redis_url(),
        socket_connect_timeout=connect_timeout_seconds,
        socket_timeout=socket_timeout_seconds,
        health_check_interval=30,
    )
    return ArqRedis(
        connection_pool=pool,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
        default_queue_name=settings.queue_name,
    )
