"""The per-tenant token bucket of the outbound API (proxy/rate_limit.py), driven by a fake clock."""

from __future__ import annotations

import pytest

from proxy.rate_limit import IDLE_BUCKET_SECONDS, TenantRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("rate", "burst", "steps", "expected_waits"),
    [
        # (seconds to advance before the call, tenant) -> seconds to wait (0 = allowed)
        (10.0, 3, [(0, "a"), (0, "a"), (0, "a"), (0, "a")], [0, 0, 0, 0.1]),
        (10.0, 3, [(0, "a")] * 3 + [(0.1, "a"), (0, "a")], [0, 0, 0, 0, 0.1]),
        (1.0, 1, [(0, "a"), (0, "b"), (0, "a"), (0, "b")], [0, 0, 1.0, 1.0]),  # tenants apart
        (2.0, 2, [(0, "a"), (0, "a"), (0.25, "a")], [0, 0, 0.25]),
        (1.0, 2, [(0, "a"), (0, "a"), (60, "a"), (0, "a"), (0, "a")], [0, 0, 0, 0, 1.0]),  # refills to burst only
    ],
)
def test_token_bucket(rate: float, burst: int, steps: list[tuple[float, str]], expected_waits: list[float]) -> None:
    clock = FakeClock()
    limiter = TenantRateLimiter(rate, burst, clock)
    waits = []
    for advance, tenant in steps:
        clock.now += advance
        waits.append(limiter.try_acquire(tenant))
    assert waits == pytest.approx(expected_waits)


def test_idle_buckets_are_forgotten_full() -> None:
    clock = FakeClock()
    limiter = TenantRateLimiter(1.0, 1, clock)
    assert limiter.try_acquire("a") == 0
    clock.now += IDLE_BUCKET_SECONDS + 1
    assert limiter.try_acquire("b") == 0  # sweeps a's idle bucket
    assert "a" not in limiter._buckets
    assert limiter.try_acquire("a") == 0
