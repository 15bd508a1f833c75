"""Drive HTTP load with wrk (C, event loop, LuaJIT): a Python generator on two cores measures itself.

Each request gets a unique request id and the send time in ms (LuaJIT FFI gettimeofday), so
dedupe never short-circuits the work and end-to-end latency can be read back from the ledger.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_LUA_TEMPLATE = r"""
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_usec; } lb_timeval; int gettimeofday(lb_timeval *tv, void *tz); ]]
local tv = ffi.new("lb_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + math.floor(tonumber(tv.tv_usec) / 1000)
end

local template = [==[__BODY__]==]
local path = "__PATH__"
local headers = __HEADERS__
local thread_count = 0
local counter = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_tag", thread_count)
end

function request()
  counter = counter + 1
  local unique = "__NONCE__-" .. tostring(thread_tag) .. "-" .. tostring(counter)
  local body = template:gsub("__REQUEST_ID__", unique)
  body = body:gsub("__NOW_MS__", tostring(now_ms()))
  body = body:gsub("__N__", tostring(counter % __SPREAD__))
  return wrk.format("POST", path, headers, body)
end

__DELAY__

function done(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%f}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.duration_seconds if self.duration_seconds else 0.0

    @classmethod
    def combined(cls, results: list[WrkResult]) -> WrkResult:
        """Several runs of the same load as one (the highest of their percentiles)."""
        return cls(
            requests=sum(result.requests for result in results),
            duration_seconds=sum(result.duration_seconds for result in results),
            errors=sum(result.errors for result in results),
            p50_ms=max(result.p50_ms for result in results),
            p99_ms=max(result.p99_ms for result in results),
        )


def ensure_wrk() -> str:
    """Path of wrk, installing Debian's package when it is missing (the bench runs as root here)."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError("wrk is required: install it (Debian/Ubuntu: apt-get install wrk)")
    subprocess.run([apt, "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    if shutil.which("wrk") is None:
        subprocess.run([apt, "update", "-qq"], check=True, capture_output=True)
        subprocess.run([apt, "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk") or "wrk"


def run_wrk(
    base_url: str,
    path: str,
    body_template: str,
    headers: dict[str, str],
    *,
    duration_seconds: float,
    connections: int,
    nonce: str,
    rate_per_second: float | None = None,
    spread: int = 1000,
) -> WrkResult:
    """POST `body_template` (placeholders __REQUEST_ID__, __NOW_MS__, __N__) for a duration.

    With `rate_per_second`, each connection waits a random (exponential) gap between requests so the
    total approaches that rate; the response time adds to each gap, so read the achieved rate back.
    """
    lua_headers = "{" + ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items()) + "}"
    delay = ""
    if rate_per_second:
        # Exponentially distributed gaps (Poisson arrivals): a fixed gap keeps every connection in
        # lockstep, and the bursts that makes would be measured as latency.
        mean_ms = connections * 1000 / rate_per_second
        delay = f"function delay() return math.floor(-{mean_ms:.3f} * math.log(1 - math.random())) end"
    script = (
        _LUA_TEMPLATE.replace("__BODY__", body_template)
        .replace("__PATH__", path)
        .replace("__HEADERS__", lua_headers)
        .replace("__DELAY__", delay)
        .replace("__NONCE__", nonce)
        .replace("__SPREAD__", str(spread))
    )
    with tempfile.TemporaryDirectory() as folder:
        script_path = Path(folder) / "load.lua"
        script_path.write_text(script)
        completed = subprocess.run(
            [
                ensure_wrk(),
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration_seconds))}s",
                "--timeout",
                "5s",
                "-s",
                str(script_path),
                base_url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    line = next(line for line in completed.stdout.splitlines() if line.startswith("WRK_JSON "))
    data = json.loads(line.removeprefix("WRK_JSON "))
    errors = sum(data[k] for k in data if k.startswith("errors_"))
    return WrkResult(
        requests=data["requests"],
        duration_seconds=data["duration_us"] / 1e6,
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )
