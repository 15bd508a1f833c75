"""Wire schemas of the incoming error log API (CONTRACT §4, §5)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from shared.errorlog.repository import IncomingErrorEntry
from shared.errors import ErrorSource

# An unencoded "+02:00" offset in a query string arrives as " 02:00"; put the plus sign back.
_SPACE_FOR_PLUS_OFFSET = re.compile(r"^(\S+T[\d:.,]+) (\d{2}(?::?\d{2})?)$")


def parse_timestamp(value: Any) -> datetime:
    """An ISO 8601 date or date-time; one without an offset is taken as UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = _SPACE_FOR_PLUS_OFFSET.sub(r"\1+\2", value.strip())
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("expected an ISO 8601 timestamp such as 2024-05-01T12:00:00Z") from None
    else:
        raise ValueError("expected an ISO 8601 timestamp")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]


class IncomingErrorSort(StrEnum):
    """`sort` values: a field name, `-` in front for descending."""

    ID = "id"
    ID_DESC = "-id"
    REQUEST_ID = "request_id"
    REQUEST_ID_DESC = "-request_id"
    ERROR_CODE = "error_code"
    ERROR_CODE_DESC = "-error_code"
    MESSAGE = "message"
    MESSAGE_DESC = "-message"
    SOURCE = "source"
    SOURCE_DESC = "-source"
    CREATED_AT = "created_at"
    CREATED_AT_DESC = "-created_at"
    LOGGED_AT = "logged_at"
    LOGGED_AT_DESC = "-logged_at"

    @property
    def field_name(self) -> str:
        return self.value.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.value.startswith("-")


class IncomingErrorListQuery(BaseModel):
    """Filters and sort of `GET …/incoming-errors`. Every given filter must match."""

    source: ErrorSource | None = Field(default=None, description="Exact error source")
    error_code: str | None = Field(
        default=None, min_length=1, max_length=64, description="Exact error code (case-insensitive)"
    )
    request_id: str | None = Field(default=None, min_length=1, max_length=128, description="Exact Firehose request id")
    message: str | None = Field(
        default=None, min_length=1, max_length=500, description="Case-insensitive substring of the message"
    )
    created_from: Timestamp | None = Field(default=None, description="created_at >= this (ISO 8601; no offset = UTC)")
    created_to: Timestamp | None = Field(default=None, description="created_at <= this (ISO 8601; no offset = UTC)")
    logged_from: Timestamp | None = Field(default=None, description="logged_at >= this (ISO 8601; no offset = UTC)")
    logged_to: Timestamp | None = Field(default=None, description="logged_at <= this (ISO 8601; no offset = UTC)")
    sort: IncomingErrorSort = Field(default=IncomingErrorSort.LOGGED_AT_DESC, description="Field, `-` for descending")

    @model_validator(mode="after")
    def _ranges_in_order(self) -> Self:
        for name, start, end in (
            ("created", self.created_from, self.created_to),
            ("logged", self.logged_from, self.logged_to),
        ):
            if start is not None and end is not None and start > end:
                raise ValueError(f"{name}_from must not be after {name}_to")
        return self


class IncomingErrorRead(IncomingErrorEntry):
    """One entry of the log, as listed."""

    model_config = ConfigDict(from_attributes=True)


class IncomingErrorDetail(IncomingErrorRead):
    """One entry with the request payload (token redacted), or null when none was kept."""

    payload: Any | None


class PayloadFormat(StrEnum):
    """Download formats of a payload: the same indented JSON, as .json or as .txt."""

    JSON = "json"
    TXT = "txt"


class ReplayCount(BaseModel):
    """How many entries were queued for replay (or, on a dry run, would be)."""

    count: int


class ReplayQuery(IncomingErrorListQuery):
    """The list's filters (its `sort` is ignored), and `dry_run` to only count."""

    dry_run: bool = Field(default=False, description="count the entries a replay would queue; queue nothing")
