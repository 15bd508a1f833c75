"""Adaptive outbound pacing: how many batches per second to send to one mParticle account (pure).

mParticle limits each account (270 batches/s by default, reference/notes/s2s.md §1-2): beyond it,
a 429. Its answers carry `X-MP-Rate-Limit-Percentage-Used` (0-100), how much of the limit is in
use. The rule keeps that figure in a band, slowing down before mParticle throttles:

- below `speed_up_below_percent`: faster, by `increase_factor`, or by `fast_increase_factor` below
  `far_below_percent` (an account whose limit dwarfs what is sent; never beyond the ceiling: a high
  one when mParticle reports its usage, `blind_ceiling_batches_per_second` when it does not, just
  under the default limit);
- from `slow_down_from_percent`: slower, by `decrease_factor`;
- in between, by the trend: a little slower (`drift_down_factor`) while usage rises from one
  adjustment to the next, a little faster (`drift_up_factor`) while it falls, else unchanged;
- a 429: `throttled_factor` (the caller also waits out its Retry-After).

The rate moves at most once per `adjust_interval_seconds`, on the highest usage seen meanwhile:
the figure lags the rate, and reacting to every answer would compound one signal many times. The
band assumes the figure reports how much of the account's allowance is used up (a token bucket
being emptied): kept in the band, the rate averages the limit itself without reaching it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.outbound.limits import MAX_BULK_BATCHES


@dataclass(frozen=True)
class PacingPolicy:
    """The constants of the pacing rule (defaults tuned against bench/outbound_pacing.py)."""

    start_batches_per_second: float = 250.0
    floor_batches_per_second: float = 1.0
    blind_ceiling_batches_per_second: float = 250.0
    ceiling_batches_per_second: float = 10_000.0
    speed_up_below_percent: float = 30.0
    slow_down_from_percent: float = 60.0
    increase_factor: float = 1.03
    far_below_percent: float = 5.0
    fast_increase_factor: float = 1.25
    decrease_factor: float = 0.9
    drift_up_factor: float = 1.02
    drift_down_factor: float = 0.97
    # Usage changes smaller than this (percentage points) are no trend.
    trend_threshold_percent: float = 2.0
    throttled_factor: float = 0.5
    adjust_interval_seconds: float = 0.25
    # A request carries about this long's worth of batches, so requests stay small and evenly spaced.
    request_interval_seconds: float = 0.1


DEFAULT_PACING = PacingPolicy()


def adjusted_rate(
    rate_batches_per_second: float,
    *,
    highest_percent_used: float | None,
    throttled: bool,
    previous_percent_used: float | None = None,
    policy: PacingPolicy = DEFAULT_PACING,
) -> float:
    """The next rate, from the highest usage mParticle reported since the last adjustment (None
    when no answer carried the header), the one before it (the trend) and whether a request was
    answered 429 meanwhile."""
    if throttled:
        rate = rate_batches_per_second * policy.throttled_factor
    elif highest_percent_used is None:
        ceiling = min(policy.blind_ceiling_batches_per_second, policy.ceiling_batches_per_second)
        rate = min(rate_batches_per_second * policy.increase_factor, max(ceiling, rate_batches_per_second))
    elif highest_percent_used >= policy.slow_down_from_percent:
        rate = rate_batches_per_second * policy.decrease_factor
    elif highest_percent_used < policy.far_below_percent:
        rate = rate_batches_per_second * policy.fast_increase_factor
    elif highest_percent_used < policy.speed_up_below_percent:
        rate = rate_batches_per_second * policy.increase_factor
    elif previous_percent_used is None:
        rate = rate_batches_per_second
    elif highest_percent_used - previous_percent_used >= policy.trend_threshold_percent:
        rate = rate_batches_per_second * policy.drift_down_factor
    elif previous_percent_used - highest_percent_used >= policy.trend_threshold_percent:
        rate = rate_batches_per_second * policy.drift_up_factor
    else:
        rate = rate_batches_per_second
    return min(max(rate, policy.floor_batches_per_second), policy.ceiling_batches_per_second)


def batches_per_request(rate_batches_per_second: float, policy: PacingPolicy = DEFAULT_PACING) -> int:
    """How many batches one S2S request carries at this rate: request_interval_seconds' worth,
    at least 1, at most a bulk request's 100."""
    wanted = math.floor(rate_batches_per_second * policy.request_interval_seconds)
    return min(max(wanted, 1), MAX_BULK_BATCHES)


def parse_percent_used(value: str | None) -> float | None:
    """The `X-MP-Rate-Limit-Percentage-Used` header as a number from 0 to 100; None when absent or invalid."""
    if value is None:
        return None
    try:
        percent = float(value.strip().rstrip("%"))
    except ValueError:
        return None
    if not math.isfinite(percent) or percent < 0:
        return None
    return min(percent, 100.0)
