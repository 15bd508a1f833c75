"""The incoming error log for operators: filtered, sorted cursor pages, one entry, payload downloads.

A cursor carries the sort it was made for and the keyset position (sort key value, id) of the
last entry served; it is refused with another sort, since the position would mean nothing there.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from proxy.admin.errorlog.schemas import (
    IncomingErrorDetail,
    IncomingErrorListQuery,
    IncomingErrorRead,
    IncomingErrorSort,
    PayloadFormat,
)
from proxy.pagination import Page, cursor_position, page_of
from shared.errorlog.repository import (
    TIMESTAMP_SORT_FIELDS,
    IncomingErrorFilters,
    IncomingErrorRepository,
    KeysetPosition,
    ListOrder,
    SortField,
)
from shared.errors import NotFound, Unprocessable
from shared.models import IncomingError
from shared.tenants.rows import require_tenant

# Entry ids are PostgreSQL bigints; anything else in the path cannot name an entry.
_ENTRY_ID = re.compile(r"^[0-9]{1,19}$")
_MAX_BIGINT = 2**63 - 1

_MEDIA_TYPES = {PayloadFormat.JSON: "application/json", PayloadFormat.TXT: "text/plain; charset=utf-8"}


@dataclass(frozen=True)
class PayloadDownload:
    """A payload rendered for download."""

    body: bytes
    media_type: str
    filename: str


async def list_incoming_errors(
    session: AsyncSession, tenant_id: str, query: IncomingErrorListQuery, *, limit: int, cursor: str | None
) -> Page[IncomingErrorRead]:
    """One page of the tenant's log; `next_cursor` is null on the last page."""
    repository = IncomingErrorRepository(session)
    await require_tenant(session, tenant_id)
    order = ListOrder(field=SortField(query.sort.field_name), descending=query.sort.descending)
    after = position_from_cursor(cursor, query.sort)
    rows = await repository.list_page(
        tenant_id, filters=filters_from_query(query), order=order, after=after, limit=limit + 1
    )
    return page_of(
        rows,
        limit,
        lambda row: IncomingErrorRead.model_validate(row, from_attributes=True),
        lambda row: cursor_position_of(query.sort, row.position),
    )


async def get_incoming_error(session: AsyncSession, tenant_id: str, entry_id: str) -> IncomingErrorDetail:
    """One entry of the tenant with its payload."""
    entry = await find_entry(session, tenant_id, entry_id)
    return IncomingErrorDetail.model_validate(entry, from_attributes=True)


async def download_payload(
    session: AsyncSession, tenant_id: str, entry_id: str, payload_format: PayloadFormat
) -> PayloadDownload:
    """The entry's payload as indented JSON (2 spaces, keys in stored order, final newline)."""
    entry = await find_entry(session, tenant_id, entry_id)
    if entry.payload is None:
        raise NotFound(f"incoming error {entry.id} has no payload")
    return PayloadDownload(
        body=render_payload(entry.payload),
        media_type=_MEDIA_TYPES[payload_format],
        filename=f"incoming-error-{entry.id}.{payload_format.value}",
    )


def render_payload(payload: Any) -> bytes:
    """Beautified JSON: 2-space indent, keys in their stored order, UTF-8, trailing newline."""
    return (json.dumps(payload, indent=2, ensure_ascii=False) + "\n").encode()


def filters_from_query(query: IncomingErrorListQuery) -> IncomingErrorFilters:
    """Repository filters from the validated query (error codes are upper-case)."""
    return IncomingErrorFilters(
        source=query.source.value if query.source is not None else None,
        error_code=query.error_code.upper() if query.error_code is not None else None,
        request_id=query.request_id,
        message_contains=query.message,
        created_from=query.created_from,
        created_to=query.created_to,
        logged_from=query.logged_from,
        logged_to=query.logged_to,
    )


def cursor_position_of(sort: IncomingErrorSort, position: KeysetPosition) -> dict[str, Any]:
    """What the cursor continuing after `position` under `sort` wraps."""
    value = position.sort_value.isoformat() if isinstance(position.sort_value, datetime) else position.sort_value
    return {"sort": sort.value, "after": [value, position.id]}


def position_from_cursor(cursor: str | None, sort: IncomingErrorSort) -> KeysetPosition | None:
    """The keyset position inside a cursor (None without one); 422 when malformed or made for another sort."""
    data = cursor_position(cursor, dict)
    if data is None:
        return None
    if not isinstance(data.get("after"), list) or len(data["after"]) != 2:
        raise Unprocessable("invalid cursor")
    if data.get("sort") != sort.value:
        raise Unprocessable(f"this cursor belongs to sort={data.get('sort')}; repeat that sort or start without cursor")
    value, last_id = data["after"]
    if not isinstance(last_id, int) or isinstance(last_id, bool):
        raise Unprocessable("invalid cursor")
    return KeysetPosition(sort_value=_sort_value(SortField(sort.field_name), value), id=last_id)


def _sort_value(field: SortField, value: Any) -> str | int | datetime:
    if field is SortField.ID:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, str):
        if field not in TIMESTAMP_SORT_FIELDS:
            return value
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    raise Unprocessable("invalid cursor")


async def find_entry(session: AsyncSession, tenant_id: str, entry_id: str) -> IncomingError:
    """The tenant's entry named by the path's id; NotFound otherwise."""
    if _ENTRY_ID.match(entry_id) and int(entry_id) <= _MAX_BIGINT:
        entry = await IncomingErrorRepository(session).find(tenant_id, int(entry_id))
        if entry is not None:
            return entry
    raise NotFound(f"incoming error {entry_id!r} not found")
