"""The Firehose queue's job value: what is stored in Redis for a request reads back unchanged."""

from __future__ import annotations

import pytest

from shared.queues.firehose import ReplayOf, job_value, parse_job_value


@pytest.mark.parametrize("body", ['{"a": 1}', '{\n  "pretty": "json"\n}', "", "line\nbreaks\n\neverywhere\n"])
def test_job_value_round_trip(body: str) -> None:
    assert parse_job_value(job_value(1.5e12 + 0.25, "t-1", 1714592744066, body)) == (
        1.5e12 + 0.25,
        "t-1",
        1714592744066,
        body,
        None,
    )
    replay = ReplayOf(entry_id=42, requested_at_ms=1714592745000)
    assert parse_job_value(job_value(1.5e12, "t-1", 1714592744066, body, replay)) == (
        1.5e12,
        "t-1",
        1714592744066,
        body,
        replay,
    )
