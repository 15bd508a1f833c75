"""Fixtures of the observability tests: real proxy/worker processes (tests/e2e) and a scrape helper."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ChildProcess, own_database_url, spawn  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_SECONDS = 20.0

# {(sample name, frozenset of label items): value}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; fails the test naming what is there when it is missing."""
    key = (name, frozenset(labels.items()))
    if key not in samples:
        present = sorted(f"{n}{dict(items)}" for n, items in samples if n == name)
        raise AssertionError(f"no sample {name}{labels}; present: {present}")
    return samples[key]


def promtool() -> str:
    """Path of promtool, installed (idempotently) by scripts/ensure-tools.sh."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "ensure-tools.sh"), "promtool"], capture_output=True, text=True, check=True
    )
    return os.path.join(result.stdout.strip().splitlines()[-1], "promtool")


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` over an exposition (its lint rules: names, suffixes, help texts)."""
    return subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True)


async def wait_for_http(url: str, child: ChildProcess) -> None:
    """Wait until `url` answers 200 (bounded), failing with the child's output if it died."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or (child.process is not None and child.process.poll() is not None):
                raise AssertionError(f"{child.command} did not serve {url}:\n{child.output()}")
            await asyncio.sleep(0.1)


async def eventually_true(
    check: Callable[[], object], *, timeout_seconds: float = 30.0, children: Sequence[ChildProcess] = ()
) -> None:
    """Wait until `await check()` is truthy (a bound for another process, not a timing claim); on
    failure the message names the check and carries the output of `children`."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            outputs = "".join(f"\n--- {child.log_path.name}\n{child.output()}" for child in children)
            name = getattr(check, "__name__", repr(check))
            raise AssertionError(f"condition {name} not met within {timeout_seconds}s{outputs}")
        await asyncio.sleep(0.1)
