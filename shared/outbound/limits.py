"""S2S size and volume limits (reference/notes/s2s.md §1), the API paths, and how batches are
grouped into requests within those limits (pure)."""

from __future__ import annotations

from collections.abc import Sequence

KIB = 1024
# One batch is for one user and should stay under 128 KB.
MAX_BATCH_BYTES = 128 * KIB
# A request (/v2/events or /v2/bulkevents) must stay under 256 KB, whatever the number of batches.
MAX_REQUEST_BYTES = 256 * KIB
# A /v2/bulkevents request carries at most 100 batches.
MAX_BULK_BATCHES = 100

EVENTS_PATH = "/v2/events"
BULK_EVENTS_PATH = "/v2/bulkevents"


def bulk_request_size(batch_sizes: Sequence[int]) -> int:
    """Bytes of a JSON array holding batches of these encoded sizes."""
    return 2 + sum(batch_sizes) + max(len(batch_sizes) - 1, 0)


def plan_requests(
    batch_sizes: Sequence[int],
    *,
    max_batches: int = MAX_BULK_BATCHES,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> list[list[int]]:
    """Group batches (by index, order kept) into requests of at most `max_batches` batches and
    under `max_request_bytes` each. A group of one is sent alone to /v2/events."""
    groups: list[list[int]] = []
    current: list[int] = []
    current_bytes = 2
    for index, size in enumerate(batch_sizes):
        added = size + (1 if current else 0)
        if current and (len(current) >= max_batches or current_bytes + added >= max_request_bytes):
            groups.append(current)
            current, current_bytes, added = [], 2, size
        current.append(index)
        current_bytes += added
    if current:
        groups.append(current)
    return groups
