"""The resend schedule of outbound messages (pure: the caller passes the random jitter in).

Resend n (n = 1 after the first attempt failed) waits `base * 2**(n-1)`, spread by ±JITTER_RATIO
so that messages failed together do not come back together, capped at MAX_RESEND_DELAY_SECONDS,
and never shorter than the server's `Retry-After`. With JITTER_RATIO below 1/3 every delay is
still longer than the one before it.
"""

from __future__ import annotations

JITTER_RATIO = 0.2
MAX_RESEND_DELAY_SECONDS = 3600.0


def resend_delay_seconds(
    resend_number: int,
    *,
    base_seconds: float,
    jitter_unit: float,
    retry_after_seconds: float | None = None,
) -> float:
    """Seconds to wait before resend `resend_number` (1-based).

    `jitter_unit` is a random number in [0, 1): 0 gives the shortest spread, 0.5 the nominal delay.
    """
    if resend_number < 1:
        raise ValueError(f"resend_number starts at 1, got {resend_number}")
    if not 0.0 <= jitter_unit < 1.0:
        raise ValueError(f"jitter_unit must be within [0, 1), got {jitter_unit}")
    # Cap the exponent as well as the result so a huge resend number cannot overflow.
    nominal = min(base_seconds * 2.0 ** min(resend_number - 1, 64), MAX_RESEND_DELAY_SECONDS)
    spread = 1.0 + JITTER_RATIO * (2.0 * jitter_unit - 1.0)
    delay = nominal * spread
    if retry_after_seconds is not None:
        delay = max(delay, retry_after_seconds)
    return delay


def next_resend_delay_seconds(
    attempts_made: int,
    *,
    max_resends: int,
    base_seconds: float,
    jitter_unit: float,
    retry_after_seconds: float | None = None,
) -> float | None:
    """After `attempts_made` attempts (the first included) failed retryably: the delay before the
    next resend, or None when the `max_resends` resends are used up and the message fails."""
    if attempts_made < 1:
        raise ValueError(f"attempts_made counts the attempt just made, got {attempts_made}")
    resends_done = attempts_made - 1
    if resends_done >= max_resends:
        return None
    return resend_delay_seconds(
        resends_done + 1,
        base_seconds=base_seconds,
        jitter_unit=jitter_unit,
        retry_after_seconds=retry_after_seconds,
    )
