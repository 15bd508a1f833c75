"""Attribute templates of inbound mappings (CONTRACT §3). Pure: no I/O, no clock.

A template value is rendered against one Firehose event and its whole message (the batch):

- exactly `{path}`: the referenced value with its JSON type (`{points}` -> "500", `{event.total_amount}` -> 11);
- text mixing `{path}` placeholders: interpolated as text (strings as they are, other values as
  their JSON text): `"order {transaction_id} in {currency_code}"` -> `"order T-1 in USD"`;
- anything else is a literal: a string without placeholders, and every non-string JSON value.

Paths: `{name}` is the event's `attributes[name]`, else the event's own field `name` (the name is
taken whole, so attribute keys containing dots work); `{event.a.b}` walks the event and
`{batch.a.b}` the whole message, through objects by key and lists by index (`{event.products.0.id}`).
A reference that resolves to nothing omits the attribute, also inside interpolated text.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

EVENT_PREFIX: Final = "event."
BATCH_PREFIX: Final = "batch."

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
# dict first: decoded JSON objects are dicts, and an ABC isinstance check is slow on the hot path.
_MAPPINGS = (dict, Mapping)


class _Missing:
    """Marks a reference that resolved to nothing (distinct from a JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def walk_path(root: Any, path: str) -> Any:
    """Follow a dotted path through objects (by key) and lists (by index); MISSING when it breaks."""
    current = root
    for segment in path.split("."):
        if isinstance(current, list):  # before the Mapping ABC check, which is slow
            if not (segment.isascii() and segment.isdigit()):
                return MISSING
            index = int(segment)
            if index >= len(current):
                return MISSING
            current = current[index]
        elif isinstance(current, _MAPPINGS):
            if segment not in current:
                return MISSING
            current = current[segment]
        else:
            return MISSING
    return current


def resolve_reference(reference: str, event: Mapping[str, Any], batch: Mapping[str, Any]) -> Any:
    """The value a placeholder's inner text refers to, or MISSING."""
    reference = reference.strip()
    if reference.startswith(EVENT_PREFIX):
        return walk_path(event, reference[len(EVENT_PREFIX) :])
    if reference.startswith(BATCH_PREFIX):
        return walk_path(batch, reference[len(BATCH_PREFIX) :])
    attributes = event.get("attributes")
    if isinstance(attributes, _MAPPINGS) and reference in attributes:
        return attributes[reference]
    if reference in event:
        return event[reference]
    return MISSING


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # integers beyond 64 bits
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# A parsed template: the reference of a whole-value template, or (text before, reference) pairs
# and the trailing text.
_Parsed = str | tuple[tuple[tuple[str, str], ...], str]


@functools.lru_cache(maxsize=4096)
def _parse_template(template: str) -> _Parsed:
    """Parse once per distinct template (the worker renders the same few for every event)."""
    whole = _PLACEHOLDER.fullmatch(template)
    if whole is not None and whole.group(1).strip():
        return whole.group(1).strip()
    pieces: list[tuple[str, str]] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        if not match.group(1).strip():
            continue  # "{ }" is text, not a reference
        pieces.append((template[position : match.start()], match.group(1).strip()))
        position = match.end()
    return tuple(pieces), template[position:]


def render_template(template: Any, resolve: Callable[[str], Any]) -> Any:
    """Render one template value, looking references up with `resolve` (which answers MISSING for
    what is not there); MISSING when a reference in the template resolves to nothing."""
    if not isinstance(template, str):
        return template
    parsed = _parse_template(template)
    if isinstance(parsed, str):
        return resolve(parsed)
    references, tail = parsed
    if not references:
        return template
    texts: list[str] = []
    for text, reference in references:
        value = resolve(reference)
        if value is MISSING:
            return MISSING
        texts.append(text)
        texts.append(_as_text(value))
    texts.append(tail)
    return "".join(texts)


def render_value(template: Any, event: Mapping[str, Any], batch: Mapping[str, Any]) -> Any:
    """Render one inbound template value against an event and its message; MISSING when a
    reference in it resolves to nothing."""
    return render_template(template, lambda reference: resolve_reference(reference, event, batch))


def render_attributes(
    templates: Mapping[str, Any], event: Mapping[str, Any], batch: Mapping[str, Any]
) -> dict[str, Any]:
    """Render every attribute template; attributes whose reference is missing are left out."""
    rendered: dict[str, Any] = {}
    for name, template in templates.items():
        value = render_value(template, event, batch)
        if value is not MISSING:
            rendered[name] = value
    return rendered
