"""`python -m bench` (`make bench`): measure the pair against ceilings taken in the same run.

Phases, one proxy process throughout (uvicorn + uvloop + httptools):
 1. proxy ingest: wrk at saturation on POST /mparticle/firehose (5-event requests) vs the same
    body on the parse-only ceiling route; then p50/p99 at half the saturation rate. No worker runs,
    so the accepted requests form the backlog of phase 2.
 2. inbound processing: one worker drains that backlog; ledger rows/s vs asyncpg executemany.
 3. end to end: proxy + worker at half the saturation rate; request sent -> ledger row visible.
 4. outbound: accepted/s on POST …/outbound/events vs the parse-only ceiling (worker stopped), then
    delivered/s by one worker to a 202-at-once fake S2S vs that fake's own rate under wrk.
 5. peak resident memory (VmHWM) of the proxy and the worker processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import environment, measure, processes
from bench.wrk import WrkResult, run_wrk

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass
class Row:
    name: str
    value: float
    unit: str
    ceiling: float | None = None
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        return self.value / self.ceiling if self.ceiling else None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.name}: {row.value:,.1f} {row.unit}" + (f" (ceiling {row.ceiling:,.1f})" if row.ceiling else ""))

    def table(self) -> str:
        header = f"| {'measure':<48} | {'value':>12} | {'ceiling':>12} | {'ratio':>6} | {'target':<22} | met |"
        lines = [header, "|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|"]
        for row in self.rows:
            ceiling = f"{row.ceiling:,.0f}" if row.ceiling else ""
            ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
            met = "" if row.met is None else ("yes" if row.met else "NO")
            lines.append(
                f"| {row.name:<48} | {row.value:>12,.1f} | {ceiling:>12} | {ratio:>6} | {row.target:<22} | {met:<3} |"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class Profile:
    saturation_seconds: float
    latency_seconds: float
    e2e_seconds: float
    outbound_seconds: float
    connections: int


FULL = Profile(saturation_seconds=10, latency_seconds=10, e2e_seconds=15, outbound_seconds=10, connections=32)
SMOKE = Profile(saturation_seconds=1, latency_seconds=1, e2e_seconds=2, outbound_seconds=1, connections=4)


def _check(report: Report, result: WrkResult, what: str) -> None:
    if result.errors:
        report.notes.append(f"{what}: {result.errors} of {result.requests} requests failed (non-2xx or socket errors)")


PHASES = ("ingest", "inbound", "e2e", "outbound")
PACED_CONNECTIONS_FACTOR = 2


@dataclass
class BenchRun:
    """What the phases share: the profile, the report, the servers and the processes."""

    profile: Profile
    report: Report
    work_dir: Path
    database_url: str
    env: dict[str, str]
    base_url: str
    s2s_url: str
    tenant: environment.BenchTenant
    proxy: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes] | None = None
    worker_peak_mb: float = 0.0
    saturation_rate: float = 0.0
    accepted_requests: int = 0

    def start_worker(self, log_name: str) -> None:
        self.worker = processes.start_cli("worker", self.env, self.work_dir / log_name)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker_peak_mb = max(self.worker_peak_mb, processes.peak_rss_mb(self.worker.pid))
            processes.stop(self.worker)
            self.worker = None

    def firehose(self, **kwargs: Any) -> WrkResult:
        return self.load("/mparticle/firehose", environment.firehose_body(self.tenant), {}, **kwargs)

    def load(
        self, path: str, body: str, headers: dict[str, str], *, base: str | None = None, **kwargs: Any
    ) -> WrkResult:
        # wrk's delay() comes after each response, so a paced connection sends one request per
        # (delay + response time): more connections keep the response time a small part of it.
        connections = self.profile.connections * (PACED_CONNECTIONS_FACTOR if kwargs.get("rate_per_second") else 1)
        return run_wrk(
            base or self.base_url,
            path,
            body,
            {"Content-Type": "application/json", **headers},
            connections=connections,
            **kwargs,
        )


def phase_ingest(run: BenchRun) -> None:
    """Proxy ingest at saturation vs the parse-only ceiling, then latency at half that rate."""
    print("1. proxy ingest")
    body = environment.firehose_body(run.tenant)
    run.load("/bench/parse-only", body, {}, duration_seconds=1, nonce="warm")
    ceiling = run.load("/bench/parse-only", body, {}, duration_seconds=run.profile.saturation_seconds, nonce="ceil")
    ingest = run.firehose(duration_seconds=run.profile.saturation_seconds, nonce="sat")
    _check(run.report, ingest, "ingest at saturation")
    rate, ceiling_rate = ingest.requests_per_second, ceiling.requests_per_second
    run.report.add(
        Row(
            "proxy ingest, requests/s (5-event requests)",
            rate,
            "req/s",
            ceiling_rate,
            ">= 0.8 x ceiling",
            rate >= 0.8 * ceiling_rate,
        )
    )
    run.saturation_rate = rate
    paced = run.firehose(duration_seconds=run.profile.latency_seconds, nonce="half", rate_per_second=rate / 2)
    _check(run.report, paced, "ingest at half rate")
    run.report.add(Row("proxy ingest rate of the latency run, requests/s", paced.requests_per_second, "req/s"))
    run.report.add(Row("proxy ingest p50 at half saturation, ms", paced.p50_ms, "ms"))
    run.report.add(
        Row("proxy ingest p99 at half saturation, ms", paced.p99_ms, "ms", None, "<= 20 ms", paced.p99_ms <= 20)
    )
    run.accepted_requests = ingest.requests - ingest.errors + paced.requests - paced.errors


async def phase_inbound(run: BenchRun) -> None:
    """One worker drains the backlog left by the ingest phase; vs asyncpg executemany."""
    print("2. inbound processing")
    if run.accepted_requests == 0:  # run alone: build a backlog first, no worker running
        backlog = run.firehose(duration_seconds=run.profile.saturation_seconds, nonce="fill")
        run.accepted_requests = backlog.requests - backlog.errors
    expected = run.accepted_requests * 5
    run.start_worker("worker-inbound.log")
    done, events_per_second = await measure.drain_rate(
        run.database_url, "SELECT count(*) FROM ledger_event WHERE tenant_id = $1", (run.tenant.id,), expected=expected
    )
    raw = await measure.executemany_ceiling(run.database_url, f"{run.tenant.id}-ceiling", min(max(done, 5000), 100_000))
    run.report.add(
        Row(
            "inbound processing, ledger events/s (1 worker)",
            events_per_second,
            "rows/s",
            raw,
            ">= 0.25 x ceiling",
            events_per_second >= 0.25 * raw,
        )
    )
    if done < expected:
        run.report.notes.append(f"inbound drain stopped at {done} of {expected} ledger rows")


async def phase_e2e(run: BenchRun) -> None:
    """Proxy + worker at half the saturation rate: request sent -> ledger row visible."""
    print("3. end to end")
    if run.worker is None:
        run.start_worker("worker-e2e.log")
    if run.saturation_rate == 0:
        run.saturation_rate = run.firehose(
            duration_seconds=run.profile.saturation_seconds, nonce="sat"
        ).requests_per_second
    watcher = measure.VisibilityWatcher(run.database_url, run.tenant.id, "e2e")
    watching = asyncio.create_task(watcher.run())
    e2e = await asyncio.to_thread(
        run.firehose, duration_seconds=run.profile.e2e_seconds, nonce="e2e", rate_per_second=run.saturation_rate / 2
    )
    _check(run.report, e2e, "end to end")
    await measure.drain_rate(
        run.database_url,
        "SELECT count(*) FROM ledger_event WHERE tenant_id = $1 AND request_id LIKE 'e2e%'",
        (run.tenant.id,),
        expected=(e2e.requests - e2e.errors) * 5,
        stall_seconds=5,
    )
    await asyncio.sleep(0.2)
    watcher.stop()
    await watching
    p99 = measure.percentile(watcher.latencies_ms, 0.99)
    run.report.add(
        Row("end to end p50 (sent -> ledger row visible), ms", measure.percentile(watcher.latencies_ms, 0.5), "ms")
    )
    run.report.add(Row("end to end p99 (sent -> ledger row visible), ms", p99, "ms", None, "<= 250 ms", p99 <= 250))
    run.report.add(Row("end to end rate, requests/s", e2e.requests_per_second, "req/s"))


async def phase_outbound(run: BenchRun) -> None:
    """Accepted/s with no worker (vs parse-only), then delivered/s by one worker (vs the fake's rate)."""
    print("4. outbound")
    run.stop_worker()
    body = environment.outbound_event_body()
    seconds = run.profile.outbound_seconds
    ceiling = run.load("/bench/parse-only", body, {}, duration_seconds=seconds, nonce="oceil")
    accepted = run.load(
        f"/api/v1/tenants/{run.tenant.id}/outbound/events",
        body,
        {"Authorization": f"Bearer {run.tenant.engine_key}"},
        duration_seconds=seconds,
        nonce="out",
    )
    _check(run.report, accepted, "outbound accept")
    run.report.add(
        Row(
            "outbound accepted, messages/s",
            accepted.requests_per_second,
            "msg/s",
            ceiling.requests_per_second,
            ">= 0.5 x ceiling",
            accepted.requests_per_second >= 0.5 * ceiling.requests_per_second,
        )
    )
    fake_ceiling = run.load(
        "/v2/events",
        environment.s2s_batch_body(),
        {"Authorization": "Basic YmVuY2gta2V5OmJlbmNoLXNlY3JldA=="},
        base=run.s2s_url,
        duration_seconds=seconds,
        nonce="fake",
    )
    expected = accepted.requests - accepted.errors
    run.start_worker("worker-outbound.log")
    delivered, delivered_per_second = await measure.drain_rate(
        run.database_url,
        "SELECT count(*) FROM outbound_message WHERE tenant_id = $1 AND status = 'delivered'",
        (run.tenant.id,),
        expected=expected,
    )
    run.report.add(
        Row(
            "outbound delivered, messages/s (1 worker)",
            delivered_per_second,
            "msg/s",
            fake_ceiling.requests_per_second,
            ">= accepted/s",
            delivered_per_second >= accepted.requests_per_second,
        )
    )
    if delivered < expected:
        run.report.notes.append(f"outbound drain stopped at {delivered} of {expected} messages")


async def run(profile: Profile, phases: tuple[str, ...]) -> Report:
    """Set up servers and processes, run the phases in order, report memory, tear down."""
    report = Report()
    work_dir = Path(os.getcwd()) / "var" / "bench"
    work_dir.mkdir(parents=True, exist_ok=True)
    server_db, redis_url, embedded = environment.service_urls(work_dir / "services")
    database_url = await environment.create_database(server_db)
    fake_port, proxy_port = processes.free_port(), processes.free_port()
    s2s_url = f"http://127.0.0.1:{fake_port}"
    tenant = await environment.create_tenant(database_url, tenant_id=f"bench-{uuid.uuid4().hex[:6]}", s2s_url=s2s_url)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ADMIN_API_KEY": "bench-admin-key",
        "QUEUE_NAME": f"lb-bench:{uuid.uuid4().hex[:8]}",
        "PORT": str(proxy_port),
        "ENABLE_BENCH_ROUTES": "true",
        "LOG_LEVEL": "WARNING",
    }
    fake = processes.start_module("bench.fake_s2s", ["--port", str(fake_port)], env, work_dir / "fake_s2s.log")
    proxy = processes.start_cli("proxy", env, work_dir / "proxy.log")
    bench = BenchRun(
        profile, report, work_dir, database_url, env, f"http://127.0.0.1:{proxy_port}", s2s_url, tenant, proxy
    )
    try:
        processes.wait_http_ok(f"{bench.base_url}/readyz")
        processes.wait_http_ok(f"{s2s_url}/stats")
        await asyncio.sleep(1.5)  # the proxy's config cache sees the bench tenant
        if "ingest" in phases:
            phase_ingest(bench)
        if "inbound" in phases:
            await phase_inbound(bench)
        if "e2e" in phases:
            await phase_e2e(bench)
        if "outbound" in phases:
            await phase_outbound(bench)
        print("5. memory")
        bench.stop_worker()
        proxy_mb = processes.peak_rss_mb(proxy.pid)
        report.add(Row("proxy peak resident memory, MiB", proxy_mb, "MiB", None, "< 200 MiB", proxy_mb < 200))
        if bench.worker_peak_mb:
            report.add(
                Row(
                    "worker peak resident memory, MiB",
                    bench.worker_peak_mb,
                    "MiB",
                    None,
                    "< 200 MiB",
                    bench.worker_peak_mb < 200,
                )
            )
    finally:
        bench.stop_worker()
        processes.stop(proxy)
        processes.stop(fake)
        await environment.forget_queue(redis_url, env["QUEUE_NAME"])
        await environment.drop_database(database_url)
        if embedded is not None:
            embedded.stop()  # type: ignore[attr-defined]
    return report


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
    for note in report.notes:
        print(f"note: {note}")
    output = args.output or RESULTS_DIR / f"bench-{started}{'-smoke' if args.smoke else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "started": started,
                "profile": "smoke" if args.smoke else "full",
                "cpu_count": os.cpu_count(),
                "rows": [{**asdict(row), "ratio": row.ratio} for row in report.rows],
                "notes": report.notes,
            },
            indent=2,
        )
    )
    print(f"figures written to {output}")


if __name__ == "__main__":
    main()
