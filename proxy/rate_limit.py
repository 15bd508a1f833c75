"""Per-tenant rate limit of the outbound API: a token bucket per tenant, in each proxy process.

Each tenant's bucket holds up to OUTBOUND_RATE_LIMIT_BURST calls and refills at
OUTBOUND_RATE_LIMIT_PER_SECOND; a call finding it empty is answered 429 RATE_LIMITED with
`Retry-After`, so one tenant's loyalty engine cannot take every process's capacity from the
others. The limit is per process: with N proxy replicas a tenant may reach N times it. The
Firehose is never rate limited (mParticle would only retry, later and harder).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from shared.errors import RateLimited
from shared.settings import Settings

# Buckets idle this long are full again and can be forgotten (bounds memory to active tenants).
IDLE_BUCKET_SECONDS = 300.0


@dataclass
class _Bucket:
    tokens: float
    updated_at: float


class TenantRateLimiter:
    """Token buckets keyed by tenant id (monotonic clock injectable for tests)."""

    def __init__(self, rate_per_second: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate_per_second = rate_per_second
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._next_sweep_at = clock() + IDLE_BUCKET_SECONDS

    def try_acquire(self, tenant_id: str) -> float:
        """Take one call from the tenant's bucket: 0.0 when allowed, else the seconds until one is."""
        now = self._clock()
        if now >= self._next_sweep_at:
            self._sweep(now)
        bucket = self._buckets.get(tenant_id)
        if bucket is None:
            bucket = self._buckets[tenant_id] = _Bucket(self._burst, now)
        else:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated_at) * self._rate_per_second)
            bucket.updated_at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate_per_second

    def _sweep(self, now: float) -> None:
        self._buckets = {
            tenant_id: bucket
            for tenant_id, bucket in self._buckets.items()
            if now - bucket.updated_at < IDLE_BUCKET_SECONDS
        }
        self._next_sweep_at = now + IDLE_BUCKET_SECONDS


def outbound_rate_limiter(request: Request) -> TenantRateLimiter:
    """The app's limiter, made on first use from its Settings."""
    limiter: TenantRateLimiter | None = getattr(request.app.state, "outbound_rate_limiter", None)
    if limiter is None:
        settings: Settings = request.app.state.proxy.settings
        limiter = TenantRateLimiter(settings.outbound_rate_limit_per_second, settings.outbound_rate_limit_burst)
        request.app.state.outbound_rate_limiter = limiter
    return limiter


def enforce_outbound_rate_limit(request: Request, tenant_id: str) -> None:
    """RateLimited (429 with Retry-After) when the tenant's bucket is empty."""
    wait_seconds = outbound_rate_limiter(request).try_acquire(tenant_id)
    if wait_seconds > 0:
        raise RateLimited(
            f"too many outbound calls for tenant {tenant_id!r}; retry after {math.ceil(wait_seconds)} s",
            retry_after_seconds=wait_seconds,
        )
