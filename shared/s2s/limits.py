"""S2S size and volume limits (reference/notes/s2s.md §1) and the API paths."""

from __future__ import annotations

KIB = 1024
# One batch is for one user and should stay under 128 KB.
MAX_BATCH_BYTES = 128 * KIB
# A request (/v2/events or /v2/bulkevents) must stay under 256 KB, whatever the number of batches.
MAX_REQUEST_BYTES = 256 * KIB
# A /v2/bulkevents request carries at most 100 batches.
MAX_BULK_BATCHES = 100

EVENTS_PATH = "/v2/events"
BULK_EVENTS_PATH = "/v2/bulkevents"
