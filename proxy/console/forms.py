"""From HTML forms to the admin API's own pydantic schemas, and their errors back to form fields.

The console validates nothing by itself: a form is turned into the same data a JSON client would
send and parsed with the REST route's schema, so both interfaces apply one set of rules. Only the
shape is converted here (checkboxes to booleans, a number field to an int, attribute lines to an
object); what is allowed is the schema's business.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, QueryParams

from shared.errors import BridgeError, Unprocessable

ModelT = TypeVar("ModelT", bound=BaseModel)

_ROW_FIELD = re.compile(r"^items-(\d+)-([a-z_]+)$")


@dataclass
class FormErrors:
    """Messages by form field name (`api_key`, `items-0-remote_field`); `form` for the whole form."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    form: list[str] = field(default_factory=list)

    def add(self, name: str, message: str) -> None:
        if name:
            self.fields.setdefault(name, []).append(message)
        else:
            self.form.append(message)

    def at(self, name: str) -> list[str]:
        """Messages of a field, including those of its parts (`items-0-attributes-x` under `items-0-attributes`)."""
        return [
            message
            for key, messages in self.fields.items()
            if key == name or key.startswith(name + "-")
            for message in messages
        ]

    def exactly(self, name: str) -> list[str]:
        return self.fields.get(name, [])

    def merge(self, other: FormErrors) -> None:
        for name, messages in other.fields.items():
            self.fields.setdefault(name, []).extend(messages)
        self.form.extend(other.form)

    def summary(self) -> str:
        """Every message on one line (for a form that has no fields to show them beside)."""
        return "; ".join([*self.form, *(message for messages in self.fields.values() for message in messages)])

    def __bool__(self) -> bool:
        return bool(self.fields or self.form)


def _message(error: Mapping[str, Any]) -> str:
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def errors_of(exc: ValidationError) -> FormErrors:
    """A pydantic error list as messages per form field (`loc` joined with `-`)."""
    errors = FormErrors()
    for error in exc.errors():
        errors.add("-".join(str(part) for part in error.get("loc", ())), _message(error))
    return errors


def bridge_error(exc: BridgeError, field_name: str = "") -> FormErrors:
    errors = FormErrors()
    errors.add(field_name, exc.message)
    return errors


def parse(model: type[ModelT], data: Mapping[str, Any]) -> tuple[ModelT | None, FormErrors]:
    """The schema's instance, or None and the messages per field."""
    try:
        return model.model_validate(dict(data)), FormErrors()
    except ValidationError as exc:
        return None, errors_of(exc)


def parse_or_refuse(model: type[ModelT], data: Mapping[str, Any]) -> ModelT:
    """The schema's instance; a 422 page with every message otherwise (for hidden-field forms,
    which carry values a page already validated)."""
    parsed, errors = parse(model, data)
    if parsed is None:
        raise Unprocessable(errors.summary())
    return parsed


def typed_confirmation(form: FormData, expected: str) -> FormErrors:
    """The errors of a "type the id to confirm" form: none when `confirm` is exactly `expected`."""
    errors = FormErrors()
    if text(form, "confirm") != expected:
        errors.add("confirm", f"Type the tenant id {expected} to confirm.")
    return errors


# --- converting form values -------------------------------------------------------------------------


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def field_values(source: QueryParams | FormData, names: tuple[str, ...]) -> dict[str, str]:
    """The named text fields of a query string or form, "" when absent."""
    return {name: value if isinstance(value := source.get(name), str) else "" for name in names}


def given(values: Mapping[str, str]) -> dict[str, str]:
    """The values that were filled in (an empty filter means "any")."""
    return {name: value for name, value in values.items() if value != ""}


def optional_text(form: FormData, name: str) -> str | None:
    value = text(form, name)
    return value if value != "" else None


def checkbox(form: FormData, name: str) -> bool:
    return form.get(name) is not None


def integer_or_text(value: str) -> int | str:
    """An integer field: its int, or the text as typed so the schema reports it."""
    try:
        return int(value.strip())
    except ValueError:
        return value


def parse_attribute_lines(source: str) -> dict[str, Any] | str:
    """`name = value` lines to an attributes object; the line number of the first bad line otherwise.

    A value that is JSON (`10`, `true`, `null`, `"quoted text"`) keeps its JSON type; anything else,
    templates such as `{amount}` included, is text."""
    attributes: dict[str, Any] = {}
    for number, line in enumerate(source.splitlines(), start=1):
        if not line.strip():
            continue
        name, separator, raw = line.partition("=")
        if not separator or not name.strip():
            return f"line {number}: write `name = value`"
        attributes[name.strip()] = _scalar(raw.strip())
    return attributes


def _scalar(raw: str) -> Any:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if not isinstance(value, (dict, list)) else raw


def attribute_lines(attributes: Mapping[str, Any]) -> str:
    """The inverse of parse_attribute_lines: text that reads back to the same values."""
    lines = []
    for name, value in attributes.items():
        shown = value if isinstance(value, str) and _scalar(value) == value else json.dumps(value)
        lines.append(f"{name} = {shown}")
    return "\n".join(lines)


def row_indexes(form: FormData) -> list[int]:
    """The row numbers present in a list form (`items-3-…`), in order."""
    indexes = {int(match.group(1)) for key in form if (match := _ROW_FIELD.match(key))}
    return sorted(indexes)
