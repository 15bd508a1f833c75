"""Cursor pagination shared by every admin list: `{"items": [...], "next_cursor": ...}`.

A cursor is an opaque, URL-safe token wrapping the keyset position (the sort value and id of
the last item served), so pages stay correct while new rows arrive.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel

from shared.errors import Unprocessable

ItemT = TypeVar("ItemT")

DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 500

LimitQuery = Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT, description="Items per page (max 500)")]
CursorQuery = Annotated[str | None, Query(description="`next_cursor` of the previous page")]


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None = None


def encode_cursor(position: Any) -> str:
    """Wrap a JSON-serializable keyset position into an opaque cursor."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    """Unwrap a cursor made by encode_cursor; a tampered or foreign cursor is a 422."""
    try:
        return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise Unprocessable("invalid cursor") from exc
