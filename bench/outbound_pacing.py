"""Bench phase `pacing`: one worker drains an outbound backlog into a fake S2S that throttles at
THROTTLE_BATCHES_PER_SECOND (bench/throttled_s2s.py: 429 + Retry-After beyond it, the usage header
on every answer). The adaptive pacing (shared/mapping/pacing.py, worker/outbound/pacing.py) should
deliver within 10 % of that rate with at most 1 % of the requests answered 429.

The backlog is written straight into outbound_message (what the outbound API would have stored),
one message per customer so per-customer order never holds a batch back: the phase measures the
pacing, not the API.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx

from bench import environment, measure, processes
from bench.report import Row
from bench.stack import BenchRun
from shared.settings import plain_database_url

THROTTLE_BATCHES_PER_SECOND = 200.0
# The backlog lasts this many profile "outbound seconds" at the throttled rate (at least MIN_SECONDS).
BACKLOG_SECONDS_FACTOR = 2.0
MIN_BACKLOG_SECONDS = 4.0
RATE_TOLERANCE = 0.10
MAX_THROTTLED_SHARE = 0.01

_INSERT_BACKLOG = """
INSERT INTO outbound_message (id, tenant_id, kind, customer_id, status, batch, attempts, next_attempt_at)
SELECT gen_random_uuid(), $1, 'event', 'pacing-' || n, 'queued',
    jsonb_build_object(
        'environment', 'production',
        'source_request_id', gen_random_uuid()::text,
        'user_identities', jsonb_build_object('customer_id', 'pacing-' || n),
        'events', jsonb_build_array(jsonb_build_object(
            'event_type', 'custom_event',
            'data', jsonb_build_object(
                'event_name', 'points_added', 'custom_event_type', 'transaction',
                'source_message_id', gen_random_uuid()::text,
                'timestamp_unixtime_ms', 1700000000000,
                'custom_attributes', jsonb_build_object('points', 25)
            )
        ))
    ),
    0, now()
FROM generate_series(1, $2) AS n
"""


async def _fill_backlog(database_url: str, tenant_id: str, messages: int) -> None:
    connection = await asyncpg.connect(plain_database_url(database_url))
    try:
        await connection.execute(_INSERT_BACKLOG, tenant_id, messages)
        await connection.execute("ANALYZE outbound_message")
    finally:
        await connection.close()


def _stats(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/stats", timeout=5.0)
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


async def phase_outbound_pacing(run: BenchRun) -> None:
    """Delivered batches/s and the share of 429s against a throttling fake S2S."""
    print("4b. outbound pacing")
    run.stop_workers()
    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    fake = processes.start_module(
        "bench.throttled_s2s",
        ["--port", str(port), "--limit", str(THROTTLE_BATCHES_PER_SECOND)],
        run.env,
        run.work_dir / "throttled_s2s.log",
    )
    worker = None
    try:
        processes.wait_http_ok(f"{url}/stats", process=fake)
        tenant = await environment.create_tenant(
            run.database_url, tenant_id=f"bench-pacing-{uuid.uuid4().hex[:6]}", s2s_url=url
        )
        seconds = max(run.profile.outbound_seconds * BACKLOG_SECONDS_FACTOR, MIN_BACKLOG_SECONDS)
        backlog = int(THROTTLE_BATCHES_PER_SECOND * seconds)
        await _fill_backlog(run.database_url, tenant.id, backlog)
        allowed_hosts = ",".join(h for h in (run.env.get("OUTBOUND_ALLOWED_HOSTS", ""), f"127.0.0.1:{port}") if h)
        worker_env = {**run.env, "OUTBOUND_ALLOWED_HOSTS": allowed_hosts, "METRICS_PORT": str(processes.free_port())}
        worker = processes.start_cli("worker", worker_env, run.work_dir / "worker-pacing.log")
        delivered, _ = await measure.drain_rate(
            run.database_url,
            "SELECT count(*) FROM outbound_message WHERE tenant_id = $1 AND status = 'delivered'",
            (tenant.id,),
            expected=backlog,
        )
        await asyncio.sleep(0.2)
        stats = _stats(url)
    finally:
        if worker is not None:
            run.worker_peak_mb = max(run.worker_peak_mb, processes.peak_rss_mb(worker.pid))
            processes.stop(worker)
        processes.stop(fake)
    elapsed = (stats["last_accepted_at"] or 0.0) - (stats["first_accepted_at"] or 0.0)
    rate = stats["accepted_batches"] / elapsed if elapsed > 0 else 0.0
    throttled_share = stats["throttled_requests"] / stats["requests"] if stats["requests"] else 0.0
    run.add(
        Row(
            f"outbound paced delivery vs a {THROTTLE_BATCHES_PER_SECOND:.0f} batches/s limit, batches/s",
            rate,
            "batches/s",
            THROTTLE_BATCHES_PER_SECOND,
            f"within {RATE_TOLERANCE:.0%} of the limit",
            abs(rate - THROTTLE_BATCHES_PER_SECOND) <= RATE_TOLERANCE * THROTTLE_BATCHES_PER_SECOND,
        )
    )
    run.add(
        Row(
            "outbound paced delivery, requests answered 429, %",
            100.0 * throttled_share,
            "%",
            None,
            f"<= {MAX_THROTTLED_SHARE:.0%}",
            throttled_share <= MAX_THROTTLED_SHARE,
        )
    )
    run.report.notes.append(
        f"outbound pacing: {stats['accepted_batches']} batches in {stats['requests']} requests"
        f" ({stats['throttled_requests']} answered 429) over {elapsed:.1f}s"
    )
    if delivered < backlog:
        run.report.notes.append(f"outbound pacing drain stopped at {delivered} of {backlog} messages")
