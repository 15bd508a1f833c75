"""The outbound pacing rule: rate changes from mParticle's usage header and 429s, request sizes,
and the header's parsing."""

from __future__ import annotations

import pytest

from shared.mapping.pacing import (
    DEFAULT_PACING,
    PacingPolicy,
    adjusted_rate,
    batches_per_request,
    parse_percent_used,
)

POLICY = PacingPolicy(
    floor_batches_per_second=1.0,
    blind_ceiling_batches_per_second=250.0,
    ceiling_batches_per_second=10_000.0,
    speed_up_below_percent=50.0,
    slow_down_from_percent=75.0,
    increase_factor=1.25,
    far_below_percent=5.0,
    fast_increase_factor=2.0,
    decrease_factor=0.8,
    drift_up_factor=1.1,
    drift_down_factor=0.9,
    trend_threshold_percent=2.0,
    throttled_factor=0.5,
)


class TestAdjustedRate:
    @pytest.mark.parametrize(
        ("rate", "percent", "throttled", "expected"),
        [
            # under the limit: faster, and much faster far under it
            (100.0, 10.0, False, 125.0),
            (100.0, 5.0, False, 125.0),
            (100.0, 49.9, False, 125.0),
            (100.0, 4.9, False, 200.0),
            (100.0, 0.0, False, 200.0),
            # in the band: unchanged
            (100.0, 50.0, False, 100.0),
            (100.0, 74.9, False, 100.0),
            # near the limit: slower, before any 429
            (100.0, 75.0, False, 80.0),
            (100.0, 100.0, False, 80.0),
            # a 429 halves the rate, whatever the usage figure said
            (100.0, 10.0, True, 50.0),
            (100.0, None, True, 50.0),
            (200.0, 100.0, True, 100.0),
            # the floor and the ceiling
            (1.0, 100.0, False, 1.0),
            (1.5, 90.0, True, 1.0),
            (9_000.0, 10.0, False, 10_000.0),
            (10_000.0, 1.0, False, 10_000.0),
            # reported usage lets the rate pass mParticle's default limit
            (250.0, 20.0, False, 312.5),
            (250.0, 1.0, False, 500.0),
        ],
    )
    def test_rule(self, rate: float, percent: float | None, throttled: bool, expected: float) -> None:
        assert adjusted_rate(rate, highest_percent_used=percent, throttled=throttled, policy=POLICY) == pytest.approx(
            expected
        )

    @pytest.mark.parametrize(
        ("percent", "previous", "expected"),
        [
            # in the band, the trend decides: usage rising -> a little slower, falling -> a little faster
            (60.0, 55.0, 90.0),
            (60.0, 40.0, 90.0),
            (55.0, 60.0, 110.0),
            (51.0, 74.0, 110.0),
            # changes under the threshold are no trend
            (60.0, 59.0, 100.0),
            (59.0, 60.0, 100.0),
            (60.0, None, 100.0),
            # outside the band the level decides, whatever the trend
            (20.0, 10.0, 125.0),
            (80.0, 95.0, 80.0),
        ],
    )
    def test_trend_in_the_band(self, percent: float, previous: float | None, expected: float) -> None:
        rate = adjusted_rate(
            100.0, highest_percent_used=percent, previous_percent_used=previous, throttled=False, policy=POLICY
        )
        assert rate == pytest.approx(expected)

    @pytest.mark.parametrize(
        ("rate", "expected"),
        [
            (100.0, 125.0),  # faster
            (220.0, 250.0),  # but not past the blind ceiling, under mParticle's default 270/s
            (250.0, 250.0),
            (400.0, 400.0),  # a rate learned from reported usage is kept, not cut back
        ],
    )
    def test_without_a_usage_figure_the_rate_stays_under_the_default_limit(self, rate: float, expected: float) -> None:
        assert adjusted_rate(rate, highest_percent_used=None, throttled=False, policy=POLICY) == pytest.approx(expected)

    def test_default_policy_stays_under_mparticles_default_limit_without_a_usage_figure(self) -> None:
        rate = DEFAULT_PACING.start_batches_per_second
        for _ in range(100):
            assert rate < 270
            rate = adjusted_rate(rate, highest_percent_used=None, throttled=False)
        assert rate < 270

    def test_default_policy_slows_down_near_the_limit_and_speeds_up_far_under_it(self) -> None:
        assert adjusted_rate(100.0, highest_percent_used=100.0, throttled=False) < 100.0
        assert adjusted_rate(100.0, highest_percent_used=0.0, throttled=False) > 100.0

    def test_a_steady_overload_converges_under_the_limit(self) -> None:
        """Usage above the band on every adjustment keeps lowering the rate until it is in the band."""
        rate = 270.0
        for _ in range(3):
            rate = adjusted_rate(rate, highest_percent_used=90.0, throttled=False)
        assert rate < 270.0 * DEFAULT_PACING.decrease_factor**2


class TestBatchesPerRequest:
    @pytest.mark.parametrize(
        ("rate", "expected"),
        [(0.5, 1), (1.0, 1), (9.9, 1), (10.0, 1), (25.0, 2), (200.0, 20), (270.0, 27), (1_000.0, 100), (1e6, 100)],
    )
    def test_a_tenth_of_a_second_worth_within_one_and_a_bulk_request(self, rate: float, expected: int) -> None:
        assert batches_per_request(rate) == expected


class TestParsePercentUsed:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("0", 0.0),
            ("42", 42.0),
            (" 87.5 ", 87.5),
            ("100", 100.0),
            ("130", 100.0),
            ("55%", 55.0),
            (None, None),
            ("", None),
            ("lots", None),
            ("-3", None),
            ("nan", None),
            ("inf", None),
        ],
    )
    def test_values(self, value: str | None, expected: float | None) -> None:
        assert parse_percent_used(value) == expected
