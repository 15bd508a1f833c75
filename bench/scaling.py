"""`--phases scaling`: proxies x workers (1x1, 2x1, 1x2, 2x2) under saturating Firehose load.

Each configuration runs its proxies and workers together for the same window: one wrk per proxy
(the connections split between them), requests/s summed; events/s are the ledger rows committed
in the window (the workers start on the backlog the earlier configurations left, so they are
saturated from the start). The CPU each kind of process used in the window says where the time went; the rest
of the machine is wrk, PostgreSQL, Redis and anything else running.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import measure
from bench.phases import LEDGER_COUNT_SQL
from bench.stack import BenchRun
from bench.wrk import WrkResult

CONFIGURATIONS = ((1, 1), (2, 1), (1, 2), (2, 2))
# Measured in this order (the second proxy starts once), shown in the order above.
MEASURE_ORDER = ((1, 1), (1, 2), (2, 2), (2, 1))
WORKER_READY_SECONDS = 1.0  # after /metrics answers: the consumer connects and waits
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ScalingResult:
    proxies: int
    workers: int
    requests_per_second: float
    events_per_second: float
    proxy_cores: float
    worker_cores: float
    rest_cores: float
    errors: int


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SECOND


def machine_busy_seconds() -> float:
    """CPU seconds every core spent busy since boot (/proc/stat: all but idle and iowait)."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS_PER_SECOND


async def _measure(run: BenchRun, proxies: int, workers: int) -> ScalingResult:
    while len(run.proxies) < proxies:
        run.start_proxy(f"proxy-{len(run.proxies) + 1}.log")
    run.stop_proxies(keep=proxies)
    # The backlog of the previous configuration stays: the proxies outpace the workers anyway, so
    # the workers are busy from the first moment, as at steady state.
    run.stop_workers(keep=workers)
    run.start_workers(workers, f"worker-scaling-{proxies}x{workers}")
    await asyncio.sleep(WORKER_READY_SECONDS)
    proxy_pids = [process.pid for _, process in run.proxies]
    worker_pids = [process.pid for process in run.workers]
    connections = max(1, run.profile.connections // proxies)

    def load(url: str) -> WrkResult:
        return run.firehose(
            base=url,
            connections=connections,
            duration_seconds=run.profile.scaling_seconds,
            nonce=f"s{proxies}{workers}-{url.rsplit(':', 1)[1]}",
        )

    rows_before = await measure.count_rows(run.database_url, LEDGER_COUNT_SQL, run.tenant.id)
    cpu_before = [process_cpu_seconds(pid) for pid in proxy_pids + worker_pids]
    busy_before, started = machine_busy_seconds(), time.monotonic()
    results = await asyncio.gather(*(asyncio.to_thread(load, url) for url, _ in run.proxies))
    elapsed = time.monotonic() - started
    busy = machine_busy_seconds() - busy_before
    cpu_after = [process_cpu_seconds(pid) for pid in proxy_pids + worker_pids]
    cpu = [after - before for after, before in zip(cpu_after, cpu_before, strict=True)]
    rows = await measure.count_rows(run.database_url, LEDGER_COUNT_SQL, run.tenant.id) - rows_before
    proxy_cpu, worker_cpu = sum(cpu[: len(proxy_pids)]), sum(cpu[len(proxy_pids) :])
    return ScalingResult(
        proxies=proxies,
        workers=workers,
        requests_per_second=sum(result.requests_per_second for result in results),
        events_per_second=rows / elapsed,
        proxy_cores=proxy_cpu / elapsed,
        worker_cores=worker_cpu / elapsed,
        rest_cores=max(0.0, busy - proxy_cpu - worker_cpu) / elapsed,
        errors=sum(result.errors for result in results),
    )


def scaling_table(results: list[ScalingResult]) -> str:
    lines = [
        "| proxies x workers | requests/s | ledger events/s | proxies, cores | workers, cores"
        " | rest (wrk, PostgreSQL, Redis, other), cores | failed requests |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        lines.append(
            f"| {result.proxies} x {result.workers} | {result.requests_per_second:,.0f}"
            f" | {result.events_per_second:,.0f} | {result.proxy_cores:.2f} | {result.worker_cores:.2f}"
            f" | {result.rest_cores:.2f} | {result.errors} |"
        )
    return "\n".join(lines)


async def phase_scaling(run: BenchRun) -> None:
    """The scaling table (printed after the main table, and in the JSON under `scaling`)."""
    print("6. scaling: proxies x workers")
    results = []
    for proxies, workers in MEASURE_ORDER:
        result = await _measure(run, proxies, workers)
        rates = f"{result.requests_per_second:,.0f} req/s, {result.events_per_second:,.0f} events/s"
        print(f"  {proxies} x {workers}: {rates}")
        if result.errors:
            run.report.notes.append(f"scaling {proxies} x {workers}: {result.errors} requests failed")
        results.append(result)
    run.stop_workers()
    run.stop_proxies(keep=1)
    results.sort(key=lambda result: CONFIGURATIONS.index((result.proxies, result.workers)))
    run.report.tables.append(scaling_table(results))
    run.report.extra["scaling"] = [asdict(result) for result in results]
