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
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

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


async def run(profile: Profile) -> Report:
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
        "CONFIG_CACHE_SECONDS": "1",
    }
    base = f"http://127.0.0.1:{proxy_port}"
    fake = processes.start_module("bench.fake_s2s", ["--port", str(fake_port)], env, work_dir / "fake_s2s.log")
    proxy = processes.start_cli("proxy", env, work_dir / "proxy.log")
    workers: list[int] = []
    worker = None
    try:
        processes.wait_http_ok(f"{base}/readyz")
        processes.wait_http_ok(f"{s2s_url}/stats")
        await asyncio.sleep(1.5)  # the proxy's config cache sees the bench tenant
        firehose = environment.firehose_body(tenant)
        json_headers = {"Content-Type": "application/json"}
        c = profile.connections

        print("1. proxy ingest")
        run_wrk(base, "/bench/parse-only", firehose, json_headers, duration_seconds=1, connections=c, nonce="warm")
        ceiling = run_wrk(
            base,
            "/bench/parse-only",
            firehose,
            json_headers,
            duration_seconds=profile.saturation_seconds,
            connections=c,
            nonce="ceil",
        )
        ingest = run_wrk(
            base,
            "/mparticle/firehose",
            firehose,
            json_headers,
            duration_seconds=profile.saturation_seconds,
            connections=c,
            nonce="sat",
        )
        _check(report, ingest, "ingest at saturation")
        report.add(
            Row(
                "proxy ingest, requests/s (5-event requests)",
                ingest.requests_per_second,
                "req/s",
                ceiling.requests_per_second,
                ">= 0.8 x ceiling",
                ingest.requests_per_second >= 0.8 * ceiling.requests_per_second,
            )
        )
        half_rate = ingest.requests_per_second / 2
        paced = run_wrk(
            base,
            "/mparticle/firehose",
            firehose,
            json_headers,
            duration_seconds=profile.latency_seconds,
            connections=c,
            nonce="half",
            rate_per_second=half_rate,
        )
        _check(report, paced, "ingest at half rate")
        report.add(Row("proxy ingest p50 at half saturation, ms", paced.p50_ms, "ms"))
        report.add(
            Row("proxy ingest p99 at half saturation, ms", paced.p99_ms, "ms", None, "<= 20 ms", paced.p99_ms <= 20)
        )
        accepted_requests = ingest.requests - ingest.errors + paced.requests - paced.errors

        print("2. inbound processing")
        worker = processes.start_cli("worker", env, work_dir / "worker.log")
        workers.append(worker.pid)
        done, events_per_second = await measure.drain_rate(
            database_url,
            "SELECT count(*) FROM ledger_event WHERE tenant_id = $1",
            (tenant.id,),
            expected=accepted_requests * 5,
        )
        raw = await measure.executemany_ceiling(database_url, f"{tenant.id}-ceiling", min(max(done, 5000), 100_000))
        report.add(
            Row(
                "inbound processing, ledger events/s (1 worker)",
                events_per_second,
                "rows/s",
                raw,
                ">= 0.25 x ceiling",
                events_per_second >= 0.25 * raw,
            )
        )
        if done < accepted_requests * 5:
            report.notes.append(f"inbound drain stopped at {done} of {accepted_requests * 5} ledger rows")

        print("3. end to end")
        watcher = measure.VisibilityWatcher(database_url, tenant.id, "e2e")
        watching = asyncio.create_task(watcher.run())
        e2e = await asyncio.to_thread(
            run_wrk,
            base,
            "/mparticle/firehose",
            firehose,
            json_headers,
            duration_seconds=profile.e2e_seconds,
            connections=c,
            nonce="e2e",
            rate_per_second=half_rate,
        )
        _check(report, e2e, "end to end")
        await measure.drain_rate(
            database_url,
            "SELECT count(*) FROM ledger_event WHERE tenant_id = $1 AND request_id LIKE 'e2e%'",
            (tenant.id,),
            expected=e2e.requests * 5,
            stall_seconds=5,
        )
        await asyncio.sleep(0.2)
        watcher.stop()
        await watching
        report.add(
            Row("end to end p50 (sent -> ledger row visible), ms", measure.percentile(watcher.latencies_ms, 0.5), "ms")
        )
        p99 = measure.percentile(watcher.latencies_ms, 0.99)
        report.add(Row("end to end p99 (sent -> ledger row visible), ms", p99, "ms", None, "<= 250 ms", p99 <= 250))
        report.add(Row("end to end rate, requests/s", e2e.requests_per_second, "req/s"))

        print("4. outbound")
        processes.stop(worker)
        worker = None
        out_path = f"/api/v1/tenants/{tenant.id}/outbound/events"
        out_headers = {**json_headers, "Authorization": f"Bearer {tenant.engine_key}"}
        out_body = environment.outbound_event_body()
        out_ceiling = run_wrk(
            base,
            "/bench/parse-only",
            out_body,
            json_headers,
            duration_seconds=profile.outbound_seconds,
            connections=c,
            nonce="oceil",
        )
        accepted = run_wrk(
            base, out_path, out_body, out_headers, duration_seconds=profile.outbound_seconds, connections=c, nonce="out"
        )
        _check(report, accepted, "outbound accept")
        report.add(
            Row(
                "outbound accepted, messages/s",
                accepted.requests_per_second,
                "msg/s",
                out_ceiling.requests_per_second,
                ">= 0.5 x ceiling",
                accepted.requests_per_second >= 0.5 * out_ceiling.requests_per_second,
            )
        )
        fake_ceiling = run_wrk(
            s2s_url,
            "/v2/events",
            environment.s2s_batch_body(),
            {**json_headers, "Authorization": "Basic YmVuY2gta2V5OmJlbmNoLXNlY3JldA=="},
            duration_seconds=profile.outbound_seconds,
            connections=c,
            nonce="fake",
        )
        worker = processes.start_cli("worker", env, work_dir / "worker2.log")
        workers.append(worker.pid)
        delivered_count, delivered_per_second = await measure.drain_rate(
            database_url,
            "SELECT count(*) FROM outbound_message WHERE tenant_id = $1 AND status = 'delivered'",
            (tenant.id,),
            expected=accepted.requests - accepted.errors,
        )
        report.add(
            Row(
                "outbound delivered, messages/s (1 worker)",
                delivered_per_second,
                "msg/s",
                fake_ceiling.requests_per_second,
                ">= accepted/s",
                delivered_per_second >= accepted.requests_per_second,
            )
        )
        if delivered_count < accepted.requests - accepted.errors:
            report.notes.append(f"outbound drain stopped at {delivered_count} of {accepted.requests} messages")

        print("5. memory")
        proxy_mb = processes.peak_rss_mb(proxy.pid)
        worker_mb = processes.peak_rss_mb(worker.pid)
        report.add(Row("proxy peak resident memory, MiB", proxy_mb, "MiB", None, "< 200 MiB", proxy_mb < 200))
        report.add(
            Row("worker peak resident memory, MiB (last worker)", worker_mb, "MiB", None, "< 200 MiB", worker_mb < 200)
        )
    finally:
        if worker is not None:
            processes.stop(worker)
        processes.stop(proxy)
        processes.stop(fake)
        await environment.drop_database(database_url)
        if embedded is not None:
            embedded.stop()  # type: ignore[attr-defined]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--smoke", action="store_true", help="seconds-long run that only checks the bench works")
    parser.add_argument("--output", type=Path, default=None, help="where to write the JSON figures")
    args = parser.parse_args()
    started = time.strftime("%Y%m%dT%H%M%S")
    report = asyncio.run(run(SMOKE if args.smoke else FULL))
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
