"""Per-account pacing of S2S requests in one worker process: a token bucket whose rate follows
shared/mapping/pacing.py (mParticle's usage header and 429s), and Retry-After waits.

The state lives in the worker process, one bucket per mParticle account (api_url + api_key), shared
by every tenant and delivery job of that process sending to it. With several workers each paces
its own share: all of them read the same account-wide usage figure, so together they settle
around the account's limit (each slows down when the account is busy, whoever caused it).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from shared.mapping.pacing import DEFAULT_PACING, PacingPolicy, adjusted_rate, batches_per_request
from worker.outbound.mparticle_client import DeliveryOutcome, Retryable, S2SDestination

THROTTLED_STATUS = 429
# Rounding slack: a refill computed from float times may fall a hair short of a whole request.
TOKEN_EPSILON = 1e-6
# A 429 without a usable Retry-After still pauses the account this long.
DEFAULT_THROTTLE_PAUSE_SECONDS = 1.0


class AccountPacer:
    """The token bucket of one mParticle account. acquire() before a request, observe() its outcome.

    The bucket holds one request's worth of tokens at most, so requests leave evenly spaced and
    never in a burst that would overrun the account's limit after a quiet spell.
    """

    def __init__(
        self,
        policy: PacingPolicy = DEFAULT_PACING,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self.rate_batches_per_second = policy.start_batches_per_second
        now = clock()
        self._tokens = float(self.batches_per_request())
        self._refilled_at = now
        self._paused_until = now
        self._adjusted_at = now
        # What the answers since the last adjustment said.
        self._answers = 0
        self._highest_percent_used: float | None = None
        self._previous_percent_used: float | None = None
        self._throttled = False

    def batches_per_request(self) -> int:
        """How many batches the next request should carry at the current rate."""
        return batches_per_request(self.rate_batches_per_second, self._policy)

    def paused_for_seconds(self) -> float:
        """How long mParticle's last Retry-After still holds the account back (0 when it does not)."""
        return max(self._paused_until - self._clock(), 0.0)

    async def acquire(self, batches: int, *, max_pause_seconds: float = math.inf) -> bool:
        """Wait until `batches` may be sent (callers are served in turn); False, at once, when a
        Retry-After pause would hold it back longer than `max_pause_seconds`."""
        async with self._lock:
            while True:
                now = self._clock()
                self._adjust_when_due(now)
                self._refill(now)
                if now < self._paused_until:
                    if self._paused_until - now > max_pause_seconds:
                        return False
                    await self._sleep(self._paused_until - now)
                    continue
                # A request larger than the bucket goes once the bucket is full (it then runs a debt).
                needed = min(float(batches), self._capacity())
                if self._tokens >= needed - TOKEN_EPSILON:
                    self._tokens -= batches
                    return True
                await self._sleep((needed - self._tokens) / self.rate_batches_per_second)

    def observe(self, outcome: DeliveryOutcome) -> None:
        """Take in one request's outcome: mParticle's usage figure, a 429 and its Retry-After."""
        now = self._clock()
        self._answers += 1
        if outcome.percent_used is not None:
            self._highest_percent_used = max(self._highest_percent_used or 0.0, outcome.percent_used)
        if isinstance(outcome, Retryable) and outcome.status_code == THROTTLED_STATUS:
            self._throttled = True
            pause_seconds = outcome.retry_after_seconds
            if pause_seconds is None or pause_seconds <= 0:
                pause_seconds = DEFAULT_THROTTLE_PAUSE_SECONDS
            self._paused_until = max(self._paused_until, now + pause_seconds)
        self._adjust_when_due(now)

    def _adjust_when_due(self, now: float) -> None:
        """Apply the rule once per adjust interval, on what was seen meanwhile (a burst of 429s
        answering requests sent together counts once)."""
        if now - self._adjusted_at < self._policy.adjust_interval_seconds:
            return
        if self._answers == 0:
            return
        self._refill(now)
        self.rate_batches_per_second = adjusted_rate(
            self.rate_batches_per_second,
            highest_percent_used=self._highest_percent_used,
            throttled=self._throttled,
            previous_percent_used=self._previous_percent_used,
            policy=self._policy,
        )
        self._previous_percent_used = self._highest_percent_used
        self._highest_percent_used = None
        self._throttled = False
        self._answers = 0
        self._adjusted_at = now

    def _capacity(self) -> float:
        return float(self.batches_per_request())

    def _refill(self, now: float) -> None:
        elapsed = max(now - self._refilled_at, 0.0)
        self._tokens = min(self._tokens + elapsed * self.rate_batches_per_second, self._capacity())
        self._refilled_at = now


class AccountPacers:
    """The pacers of one worker process, by mParticle account."""

    def __init__(self, policy: PacingPolicy = DEFAULT_PACING) -> None:
        self._policy = policy
        self._pacers: dict[tuple[str, str], AccountPacer] = {}

    def for_destination(self, destination: S2SDestination) -> AccountPacer:
        """The pacer of the account `destination` sends to (created on first use)."""
        key = (destination.api_url, destination.api_key)
        pacer = self._pacers.get(key)
        if pacer is None:
            pacer = self._pacers[key] = AccountPacer(self._policy)
        return pacer
