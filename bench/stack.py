"""What the phases share: the profile, the report, the database, the environment and the processes
(proxies, workers, the ingest ceiling app, the fake S2S)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import environment, processes
from bench.report import Profile, Report, Row
from bench.wrk import WrkResult, run_wrk

# wrk's delay() comes after each response, so a paced connection sends one request per
# (delay + response time): more connections keep the response time a small part of it.
PACED_CONNECTIONS_FACTOR = 2


@dataclass
class BenchRun:
    profile: Profile
    report: Report
    work_dir: Path
    database_url: str
    env: dict[str, str]
    s2s_url: str
    ceiling_url: str
    tenant: environment.BenchTenant
    proxies: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_peak_mb: float = 0.0
    saturation_rate: float = 0.0
    accepted_requests: int = 0

    @property
    def base_url(self) -> str:
        """The first proxy's URL (every phase but scaling uses one proxy)."""
        return self.proxies[0][0]

    def start_proxy(self, log_name: str) -> str:
        """Start one more proxy on a free port; returns its URL once it answers /readyz."""
        port = processes.free_port()
        url = f"http://127.0.0.1:{port}"
        proxy = processes.start_cli("proxy", {**self.env, "PORT": str(port)}, self.work_dir / log_name)
        self.proxies.append((url, proxy))
        processes.wait_http_ok(f"{url}/readyz", process=proxy)
        return url

    def stop_proxies(self, keep: int) -> None:
        """Stop every proxy beyond the first `keep`."""
        while len(self.proxies) > keep:
            processes.stop(self.proxies.pop()[1])

    def start_workers(self, count: int, log_name: str) -> None:
        """Start workers up to `count` in all, each with its own metrics port; returns once each
        serves its /metrics (it has started)."""
        started = []
        while len(self.workers) < count:
            port = processes.free_port()
            log = self.work_dir / f"{log_name}-{len(self.workers) + 1}.log"
            self.workers.append(processes.start_cli("worker", {**self.env, "METRICS_PORT": str(port)}, log))
            started.append((port, self.workers[-1]))
        for port, worker in started:
            processes.wait_http_ok(f"http://127.0.0.1:{port}/metrics", process=worker)

    def stop_workers(self, keep: int = 0) -> None:
        """Stop every worker beyond the first `keep`."""
        while len(self.workers) > keep:
            worker = self.workers.pop()
            self.worker_peak_mb = max(self.worker_peak_mb, processes.peak_rss_mb(worker.pid))
            processes.stop(worker)

    def firehose(self, **kwargs: Any) -> WrkResult:
        return self.load("/mparticle/firehose", environment.firehose_body(self.tenant), {}, **kwargs)

    def load(
        self, path: str, body: str, headers: dict[str, str], *, base: str | None = None, **kwargs: Any
    ) -> WrkResult:
        connections = kwargs.pop("connections", self.profile.connections)
        if kwargs.get("rate_per_second"):
            connections *= PACED_CONNECTIONS_FACTOR
        return run_wrk(
            base or self.base_url,
            path,
            body,
            {"Content-Type": "application/json", **headers},
            connections=connections,
            **kwargs,
        )

    def check(self, result: WrkResult, what: str) -> None:
        """Note failed requests: every figure assumes 0 non-2xx."""
        if result.errors:
            self.report.notes.append(
                f"{what}: {result.errors} of {result.requests} requests failed (non-2xx or socket errors)"
            )

    def add(self, row: Row) -> None:
        self.report.add(row)
