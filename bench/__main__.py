"""`python -m bench` (`make bench`): measure the pair against ceilings taken in the same run.

Phases (bench/phases.py, bench/scaling.py):
 1. ingest: wrk at saturation on POST /mparticle/firehose (5-event requests) vs a separate minimal
    FastAPI app (bench/ceiling_app.py) served with the proxy's uvicorn options; the proxy's own
    parse-only route as a second figure; then p50/p99 at half the saturation rate. No worker runs,
    so the accepted requests form the backlog of phase 2.
 2. inbound: one worker drains that backlog, then two workers a new one; ledger rows/s vs asyncpg
    executemany of the same rows (COPY beside it).
 3. e2e: proxy + one worker: their end-to-end saturation rate (requests applied under saturating
    load), then request sent -> ledger row visible at half that rate.
 4. outbound: accepted/s on POST …/outbound/events vs the parse-only route (worker stopped), then
    delivered/s by one worker to a 202-at-once fake S2S vs that fake's own rate under wrk.
 5. peak resident memory (VmHWM) of the proxy and the worker processes.
 4b. pacing: one worker drains an outbound backlog into a fake S2S throttling at 200 batches/s
     (bench/outbound_pacing.py): delivered batches/s and the share of 429s.
 6. scaling: proxies x workers (1x1, 2x1, 1x2, 2x2), requests/s, events/s and CPU by process kind.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path

from bench import environment, processes
from bench.outbound_pacing import phase_outbound_pacing
from bench.phases import phase_e2e, phase_inbound, phase_ingest, phase_outbound
from bench.report import FULL, SMOKE, Profile, Report, Row
from bench.scaling import phase_scaling
from bench.stack import BenchRun

RESULTS_DIR = Path(__file__).parent / "results"
PHASES = ("ingest", "inbound", "e2e", "outbound", "pacing", "scaling")


async def _run_phase(bench: BenchRun, name: str, phase: Callable[[BenchRun], Awaitable[None] | None]) -> None:
    """Run one phase; a failure becomes a note and the next phases still run."""
    started = time.monotonic()
    try:
        result = phase(bench)
        if result is not None:
            await result
    except Exception as exc:
        print(f"  {name} failed: {exc!r}")
        bench.report.notes.append(f"the {name} phase failed: {exc!r}")
        bench.stop_workers()
        bench.stop_proxies(keep=1)
    print(f"  ({name}: {time.monotonic() - started:.0f} s)")


async def _run_phases(bench: BenchRun, phases: tuple[str, ...]) -> None:
    for name, phase in (
        ("ingest", phase_ingest),
        ("inbound", phase_inbound),
        ("e2e", phase_e2e),
        ("outbound", phase_outbound),
        ("pacing", phase_outbound_pacing),
    ):
        if name in phases:
            await _run_phase(bench, name, phase)
    print("5. memory")
    bench.stop_workers()
    proxy_mb = processes.peak_rss_mb(bench.proxies[0][1].pid)
    bench.add(Row("proxy peak resident memory, MiB", proxy_mb, "MiB", None, "< 200 MiB", proxy_mb < 200))
    if bench.worker_peak_mb:
        worker_mb = bench.worker_peak_mb
        bench.add(Row("worker peak resident memory, MiB", worker_mb, "MiB", None, "< 200 MiB", worker_mb < 200))
    if "scaling" in phases:  # last: it starts and stops proxies and workers of its own
        await _run_phase(bench, "scaling", phase_scaling)


async def run(profile: Profile, phases: tuple[str, ...]) -> Report:
    """Set up servers and processes, run the phases in order, tear down."""
    report = Report()
    work_dir = Path(os.getcwd()) / "var" / "bench"
    work_dir.mkdir(parents=True, exist_ok=True)
    server_db, redis_url, embedded = environment.service_urls(work_dir / "services")
    database_url = await environment.create_database(server_db)
    fake_port, ceiling_port = processes.free_port(), processes.free_port()
    s2s_url = f"http://127.0.0.1:{fake_port}"
    tenant = await environment.create_tenant(database_url, tenant_id=f"bench-{uuid.uuid4().hex[:6]}", s2s_url=s2s_url)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ADMIN_API_KEY": "bench-admin-key",
        "SECRET_KEY": environment.BENCH_SECRET_KEY,
        "OUTBOUND_ALLOWED_HOSTS": f"127.0.0.1:{fake_port}",
        # The bench measures throughput, not the per-tenant limit (one tenant drives all the load).
        "OUTBOUND_RATE_LIMIT_PER_SECOND": "1000000",
        "OUTBOUND_RATE_LIMIT_BURST": "1000000",
        "QUEUE_NAME": f"lb-bench:{uuid.uuid4().hex[:8]}",
        "ENABLE_BENCH_ROUTES": "true",
        "LOG_LEVEL": "WARNING",
    }
    fake = processes.start_module("bench.fake_s2s", ["--port", str(fake_port)], env, work_dir / "fake_s2s.log")
    ceiling = processes.start_module(
        "bench.ceiling_app", ["--port", str(ceiling_port)], env, work_dir / "ceiling_app.log"
    )
    bench = BenchRun(profile, report, work_dir, database_url, env, s2s_url, f"http://127.0.0.1:{ceiling_port}", tenant)
    try:
        bench.start_proxy("proxy.log")
        processes.wait_http_ok(f"{s2s_url}/stats")
        processes.wait_http_ok(f"{bench.ceiling_url}/docs")
        await asyncio.sleep(1.5)  # the proxy's config cache sees the bench tenant
        await _run_phases(bench, phases)
    finally:
        # Each step on its own: a failing one must not leave processes or the database behind.
        _cleanup(bench.stop_workers)
        _cleanup(functools.partial(bench.stop_proxies, keep=0))
        _cleanup(functools.partial(processes.stop, ceiling))
        _cleanup(functools.partial(processes.stop, fake))
        try:
            await environment.forget_queue(redis_url, env["QUEUE_NAME"])
        finally:
            await environment.drop_database(database_url)
            if embedded is not None:
                embedded.stop()  # type: ignore[attr-defined]
    return report


def _cleanup(step: Callable[[], object]) -> None:
    try:
        step()
    except Exception as exc:
        print(f"cleanup step failed: {exc!r}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--smoke", action="store_true", help="seconds-long run that only checks the bench works")
    parser.add_argument("--output", type=Path, default=None, help="where to write the JSON figures")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)} (default: all)"
    )
    args = parser.parse_args()
    started = time.strftime("%Y%m%dT%H%M%S")
    phases = tuple(phase.strip() for phase in args.phases.split(",") if phase.strip())
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    report = asyncio.run(run(SMOKE if args.smoke else FULL, phases))
    print()
    print(report.table())
    for table in report.tables:
        print()
        print(table)
    for note in report.notes:
        print(f"note: {note}")
    output = args.output or RESULTS_DIR / f"bench-{started}{'-smoke' if args.smoke else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "started": started,
                "profile": "smoke" if args.smoke else "full",
                "phases": phases,
                "cpu_count": os.cpu_count(),
                "rows": [{**asdict(row), "ratio": row.ratio} for row in report.rows],
                **report.extra,
                "notes": report.notes,
            },
            indent=2,
        )
    )
    print(f"figures written to {output}")


if __name__ == "__main__":
    main()
