"""The resend schedule: growth, jitter bounds, the Retry-After floor and the resend budget."""

from __future__ import annotations

import pytest

from shared.mapping.backoff import (
    JITTER_RATIO,
    MAX_RESEND_DELAY_SECONDS,
    next_resend_delay_seconds,
    resend_delay_seconds,
)


class TestResendDelaySeconds:
    @pytest.mark.parametrize(
        ("resend_number", "base_seconds", "expected"),
        [
            (1, 10.0, 10.0),
            (2, 10.0, 20.0),
            (3, 10.0, 40.0),
            (4, 10.0, 80.0),
            (5, 10.0, 160.0),
            (1, 0.2, 0.2),
            (3, 0.2, 0.8),
            (1, 0.0, 0.0),
            (40, 10.0, MAX_RESEND_DELAY_SECONDS),
            (10_000, 10.0, MAX_RESEND_DELAY_SECONDS),
        ],
    )
    def test_nominal_delay_doubles_from_the_base_up_to_the_cap(
        self, resend_number: int, base_seconds: float, expected: float
    ) -> None:
        assert resend_delay_seconds(resend_number, base_seconds=base_seconds, jitter_unit=0.5) == pytest.approx(
            expected
        )

    @pytest.mark.parametrize(
        ("jitter_unit", "factor"),
        [(0.0, 1 - JITTER_RATIO), (0.25, 1 - JITTER_RATIO / 2), (0.5, 1.0), (0.75, 1 + JITTER_RATIO / 2)],
    )
    def test_jitter_spreads_within_bounds(self, jitter_unit: float, factor: float) -> None:
        assert resend_delay_seconds(2, base_seconds=10.0, jitter_unit=jitter_unit) == pytest.approx(20.0 * factor)

    def test_jitter_never_leaves_the_bounds(self) -> None:
        delay = resend_delay_seconds(3, base_seconds=10.0, jitter_unit=0.999999)
        assert 40.0 * (1 - JITTER_RATIO) <= delay < 40.0 * (1 + JITTER_RATIO)

    @pytest.mark.parametrize("resend_number", [1, 2, 3, 4, 5, 6, 7])
    def test_every_delay_is_longer_than_the_previous_whatever_the_jitter(self, resend_number: int) -> None:
        longest_previous = resend_delay_seconds(resend_number, base_seconds=10.0, jitter_unit=0.999999)
        shortest_next = resend_delay_seconds(resend_number + 1, base_seconds=10.0, jitter_unit=0.0)
        assert shortest_next > longest_previous

    @pytest.mark.parametrize(
        ("retry_after_seconds", "expected"),
        [
            (None, 10.0),
            (0.0, 10.0),
            (5.0, 10.0),
            (10.0, 10.0),
            (30.0, 30.0),
            (86_400.0, 86_400.0),
        ],
    )
    def test_retry_after_is_a_floor(self, retry_after_seconds: float | None, expected: float) -> None:
        delay = resend_delay_seconds(1, base_seconds=10.0, jitter_unit=0.5, retry_after_seconds=retry_after_seconds)
        assert delay == pytest.approx(expected)

    @pytest.mark.parametrize(("resend_number", "jitter_unit"), [(0, 0.5), (-1, 0.5), (1, 1.0), (1, -0.1)])
    def test_rejects_out_of_range_arguments(self, resend_number: int, jitter_unit: float) -> None:
        with pytest.raises(ValueError):
            resend_delay_seconds(resend_number, base_seconds=10.0, jitter_unit=jitter_unit)


class TestNextResendDelaySeconds:
    @pytest.mark.parametrize(
        ("attempts_made", "max_resends", "expected"),
        [
            (1, 5, 10.0),  # first attempt failed: resend 1
            (2, 5, 20.0),
            (5, 5, 160.0),  # resend 5, the last one
            (6, 5, None),  # the fifth resend failed too: give up
            (7, 5, None),
            (1, 0, None),  # no resends at all
            (1, 1, 10.0),
            (2, 1, None),
        ],
    )
    def test_budget_of_resends_after_the_first_attempt(
        self, attempts_made: int, max_resends: int, expected: float | None
    ) -> None:
        delay = next_resend_delay_seconds(attempts_made, max_resends=max_resends, base_seconds=10.0, jitter_unit=0.5)
        if expected is None:
            assert delay is None
        else:
            assert delay == pytest.approx(expected)

    def test_retry_after_applies_to_the_next_resend(self) -> None:
        delay = next_resend_delay_seconds(2, max_resends=5, base_seconds=0.1, jitter_unit=0.0, retry_after_seconds=7.0)
        assert delay == pytest.approx(7.0)

    def test_retry_after_does_not_extend_the_budget(self) -> None:
        assert (
            next_resend_delay_seconds(6, max_resends=5, base_seconds=0.1, jitter_unit=0.0, retry_after_seconds=7.0)
            is None
        )

    def test_rejects_zero_attempts(self) -> None:
        with pytest.raises(ValueError):
            next_resend_delay_seconds(0, max_resends=5, base_seconds=10.0, jitter_unit=0.5)
