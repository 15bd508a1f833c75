"""The worker's per-account token bucket, on a virtual clock: spacing of requests, Retry-After
pauses (and giving up on long ones), rate adjustments from answers, one bucket per account."""

from __future__ import annotations

import pytest

from shared.mapping.pacing import PacingPolicy
from worker.outbound.mparticle_client import Delivered, Permanent, Retryable, S2SDestination
from worker.outbound.pacing import DEFAULT_THROTTLE_PAUSE_SECONDS, AccountPacer, AccountPacers

POLICY = PacingPolicy(
    start_batches_per_second=100.0,
    adjust_interval_seconds=0.25,
    request_interval_seconds=0.1,
    speed_up_below_percent=50.0,
    slow_down_from_percent=75.0,
    increase_factor=1.25,
    decrease_factor=0.8,
    drift_up_factor=1.1,
    drift_down_factor=0.9,
)


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def pacer(clock: VirtualClock) -> AccountPacer:
    return AccountPacer(POLICY, clock=clock, sleep=clock.sleep)


async def send_times(pacer: AccountPacer, clock: VirtualClock, count: int, batches: int) -> list[float]:
    times = []
    for _ in range(count):
        assert await pacer.acquire(batches)
        times.append(round(clock.now - 1000.0, 6))
    return times


class TestSpacing:
    async def test_requests_leave_evenly_spaced_at_the_rate(self, pacer: AccountPacer, clock: VirtualClock) -> None:
        assert pacer.batches_per_request() == 10
        # 100 batches/s, 10 per request: one request every 0.1 s, the first at once.
        assert await send_times(pacer, clock, 4, 10) == [0.0, 0.1, 0.2, 0.3]

    async def test_a_quiet_spell_earns_no_burst(self, pacer: AccountPacer, clock: VirtualClock) -> None:
        await send_times(pacer, clock, 1, 10)
        clock.now += 60.0  # a minute without sending
        times = await send_times(pacer, clock, 3, 10)
        assert [round(t - times[0], 6) for t in times] == [0.0, 0.1, 0.2]

    async def test_smaller_requests_go_more_often(self, pacer: AccountPacer, clock: VirtualClock) -> None:
        assert await send_times(pacer, clock, 3, 5) == [0.0, 0.0, 0.05]


class TestRetryAfter:
    async def test_a_429_pauses_the_account_for_its_retry_after(self, pacer: AccountPacer, clock: VirtualClock) -> None:
        await send_times(pacer, clock, 1, 10)
        pacer.observe(Retryable(429, "HTTP 429", retry_after_seconds=2.0))
        assert pacer.paused_for_seconds() == pytest.approx(2.0)
        start = clock.now
        assert await pacer.acquire(1)
        assert clock.now - start >= 2.0

    async def test_a_429_without_retry_after_still_pauses(self, pacer: AccountPacer, clock: VirtualClock) -> None:
        pacer.observe(Retryable(429, "HTTP 429"))
        assert pacer.paused_for_seconds() == pytest.approx(DEFAULT_THROTTLE_PAUSE_SECONDS)

    async def test_a_pause_longer_than_the_caller_may_wait_is_refused_at_once(
        self, pacer: AccountPacer, clock: VirtualClock
    ) -> None:
        pacer.observe(Retryable(429, "HTTP 429", retry_after_seconds=30.0))
        start = clock.now
        assert await pacer.acquire(1, max_pause_seconds=5.0) is False
        assert clock.now == start

    @pytest.mark.parametrize("outcome", [Retryable(503, "HTTP 503", retry_after_seconds=30.0), Permanent(400, "x")])
    async def test_only_a_429_pauses(self, pacer: AccountPacer, outcome: Retryable | Permanent) -> None:
        pacer.observe(outcome)
        assert pacer.paused_for_seconds() == 0.0


class TestAdjustments:
    @pytest.mark.parametrize(
        ("percent_used", "expected_rate"),
        [(10.0, 125.0), (60.0, 100.0), (90.0, 80.0), (None, 125.0)],
    )
    async def test_the_rate_follows_the_usage_once_per_interval(
        self, pacer: AccountPacer, clock: VirtualClock, percent_used: float | None, expected_rate: float
    ) -> None:
        pacer.observe(Delivered(202, percent_used))
        assert pacer.rate_batches_per_second == 100.0  # not before the interval has passed
        clock.now += POLICY.adjust_interval_seconds
        pacer.observe(Delivered(202, percent_used))
        assert pacer.rate_batches_per_second == pytest.approx(expected_rate)

    async def test_the_highest_usage_of_the_interval_counts(self, pacer: AccountPacer, clock: VirtualClock) -> None:
        for percent in (10.0, 95.0, 20.0):
            pacer.observe(Delivered(202, percent))
        clock.now += POLICY.adjust_interval_seconds
        pacer.observe(Delivered(202, 10.0))
        assert pacer.rate_batches_per_second == pytest.approx(80.0)

    async def test_a_rising_usage_in_the_band_slows_down_a_little(
        self, pacer: AccountPacer, clock: VirtualClock
    ) -> None:
        for percent, expected_rate in ((55.0, 100.0), (65.0, 90.0), (65.0, 90.0), (52.0, 99.0)):
            clock.now += POLICY.adjust_interval_seconds
            pacer.observe(Delivered(202, percent))
            assert pacer.rate_batches_per_second == pytest.approx(expected_rate)

    async def test_many_429s_at_once_halve_the_rate_once(self, pacer: AccountPacer, clock: VirtualClock) -> None:
        clock.now += POLICY.adjust_interval_seconds
        for _ in range(5):
            pacer.observe(Retryable(429, "HTTP 429", retry_after_seconds=0.0))
        assert pacer.rate_batches_per_second == pytest.approx(50.0)


def test_one_pacer_per_account() -> None:
    pacers = AccountPacers(POLICY)
    first = pacers.for_destination(S2SDestination("https://s2s.mparticle.com", "key-1", "secret"))
    assert pacers.for_destination(S2SDestination("https://s2s.mparticle.com", "key-1", "other secret")) is first
    assert pacers.for_destination(S2SDestination("https://s2s.mparticle.com", "key-2", "secret")) is not first
    assert pacers.for_destination(S2SDestination("https://s2s.eu1.mparticle.com", "key-1", "secret")) is not first
