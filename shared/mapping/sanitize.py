"""NUL characters (pure core).

PostgreSQL text and JSONB cannot hold U+0000, so a Firehose value carrying one could not be stored
at all. The worker replaces each NUL with U+FFFD (the Unicode replacement character) in every
string, keys included, before anything is stored; the proxy may reuse the same function.
"""

from __future__ import annotations

from typing import Any

NUL = "\x00"
REPLACEMENT_CHARACTER = "\ufffd"


def scrub_nul(value: Any) -> tuple[Any, bool]:
    """`value` with NUL replaced by U+FFFD in every string and dict key, and whether any was.

    Dicts and lists are copied only when something inside them changed; other values are returned
    as they are."""
    if isinstance(value, str):
        if NUL in value:
            return value.replace(NUL, REPLACEMENT_CHARACTER), True
        return value, False
    if isinstance(value, dict):
        changed = False
        scrubbed: dict[Any, Any] = {}
        for key, item in value.items():
            new_key, key_changed = scrub_nul(key)
            new_item, item_changed = scrub_nul(item)
            changed = changed or key_changed or item_changed
            scrubbed[new_key] = new_item
        return (scrubbed, True) if changed else (value, False)
    if isinstance(value, list):
        items = [scrub_nul(item) for item in value]
        if any(item_changed for _, item_changed in items):
            return [item for item, _ in items], True
        return value, False
    return value, False
