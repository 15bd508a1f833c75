"""Cursor pagination shared by every admin list: `{"items": [...], "next_cursor": ...}`.

A cursor is an opaque, URL-safe token wrapping the keyset position (the sort value and id of
the last item served), so pages stay correct while new rows arrive.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel

from shared.errors import Unprocessable

ItemT = TypeVar("ItemT")
RowT = TypeVar("RowT")
PositionT = TypeVar("PositionT")

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


def cursor_position(cursor: str | None, kind: type[PositionT], *, boxed: bool = False) -> PositionT | None:
    """The keyset position inside `cursor` (None without a cursor); 422 unless it is a `kind` (a
    boolean is no int). `boxed`: the position is wrapped in a one-item list, as the tenant and
    outbound message cursors have always been."""
    if cursor is None:
        return None
    position = decode_cursor(cursor)
    if boxed:
        if not (isinstance(position, list) and len(position) == 1):
            raise Unprocessable("invalid cursor")
        position = position[0]
    if not isinstance(position, kind) or isinstance(position, bool):
        raise Unprocessable("invalid cursor")
    return position


def page_of(
    rows: Sequence[RowT], limit: int, item: Callable[[RowT], ItemT], position: Callable[[RowT], Any]
) -> Page[ItemT]:
    """A page from up to `limit + 1` rows (the extra row only tells that there is a next page);
    `next_cursor` wraps the `position` of the last row served."""
    shown = rows[:limit]
    next_cursor = encode_cursor(position(shown[-1])) if len(rows) > limit and shown else None
    return Page[ItemT](items=[item(row) for row in shown], next_cursor=next_cursor)
