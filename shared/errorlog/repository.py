"""Reading and purging the incoming error log (writing is shared.errorlog.writer.record_incoming_error).

A list page is a keyset on (sort key, id) within one tenant: the page after a position holds the
rows strictly beyond it in (key, id) order. Keys never change once written, so rows that existed
when paging started are each served exactly once while new entries arrive. Every sort key has a
(tenant_id, key, id) index (migration 0002), so a page is an index range scan whatever the depth.

Two filters defeat the planner's estimates: a time window (created_* or logged_*) on a list sorted
by another field (the window's rows sit together in time, so walking the sort index can cross most
of the table before reaching them), and a message substring (its selectivity is guessed). When such
a filter matches few rows (a capped count through its own index says so), they are read through
that index first and sorted afterwards; otherwise the sort index finds a page's worth quickly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypedDict, Unpack, cast

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, CursorResult, Delete, Select, any_, delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import IncomingError, Tenant
from shared.models.incoming_error import message_sort_key, request_id_sort_key

LIKE_ESCAPE = "\\"
# Filters matching at most this many rows are applied first and sorted after (see above). A time
# window's rows are clustered, so the sort index reaches them late whatever their number: the cap
# is the most rows worth sorting. A message's matches are spread out, so the sort index meets
# them early unless they are few.
NARROW_WINDOW_ROWS = 50_000
NARROW_MESSAGE_MATCHES = 5_000
# Shorter substrings have no trigram, so the message index cannot count their matches cheaply.
MIN_TRIGRAM_CHARS = 3


class SortField(StrEnum):
    """The fields a list can be sorted by."""

    ID = "id"
    REQUEST_ID = "request_id"
    ERROR_CODE = "error_code"
    MESSAGE = "message"
    SOURCE = "source"
    CREATED_AT = "created_at"
    LOGGED_AT = "logged_at"


TIMESTAMP_SORT_FIELDS = frozenset({SortField.CREATED_AT, SortField.LOGGED_AT})


@dataclass(frozen=True)
class ListOrder:
    """A sort field and its direction."""

    field: SortField
    descending: bool


@dataclass(frozen=True)
class IncomingErrorFilters:
    """Optional conditions; all given ones must hold. Timestamp bounds are inclusive."""

    source: str | None = None
    error_code: str | None = None
    request_id: str | None = None
    message_contains: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    logged_from: datetime | None = None
    logged_to: datetime | None = None


@dataclass(frozen=True)
class KeysetPosition:
    """The last row served: its sort key value (as the database compares it) and its id."""

    sort_value: str | int | datetime
    id: int


class PageRequest(TypedDict):
    """Which page of a tenant's list: the entries matching `filters`, in `order`, beyond `after`
    (from the start when None), at most `limit` of them."""

    filters: IncomingErrorFilters
    order: ListOrder
    after: KeysetPosition | None
    limit: int


class IncomingErrorEntry(BaseModel):
    """An entry of the log as a list shows it (no payload): the admin API's schema builds on it."""

    id: int
    request_id: str | None
    error_code: str
    message: str
    source: str
    created_at: datetime
    logged_at: datetime
    replayed_at: datetime | None = Field(default=None, description="when a replay of this entry was last applied")
    replay_outcome: str | None = Field(
        default=None, description="what that replay did: `applied: N ledger event(s) recorded` or `failed: CODE…`"
    )


class IncomingErrorSummary(IncomingErrorEntry):
    """One list row with the sort key value that positions it."""

    model_config = ConfigDict(frozen=True)

    sort_value: str | int | datetime

    @property
    def position(self) -> KeysetPosition:
        return KeysetPosition(sort_value=self.sort_value, id=self.id)


@dataclass(frozen=True)
class ReplayableEntry:
    """What a replay needs of an entry: the request as stored, and when it was received."""

    id: int
    created_at: datetime
    payload: Any


# Rejected at the door (bad token, malformed JSON, ...) is never a valid request to replay.
NOT_REPLAYABLE_SOURCES = ("proxy_request",)


def replayable_conditions() -> list[ColumnElement[bool]]:
    """Entries that can be replayed: from a source past the proxy's checks, with a stored payload
    that is a Firehose request (an object with a `type` and an `id`)."""
    return [
        IncomingError.source.not_in(NOT_REPLAYABLE_SOURCES),
        IncomingError.payload.is_not(None),
        IncomingError.payload["type"].astext.is_not(None),
        IncomingError.payload["id"].astext.is_not(None),
    ]


def sort_key(field: SortField) -> ColumnElement[Any]:
    """The SQL expression a field sorts by (the same expression its index is built on)."""
    expressions: dict[SortField, ColumnElement[Any]] = {
        SortField.ID: IncomingError.id.expression,
        SortField.REQUEST_ID: request_id_sort_key(),
        SortField.ERROR_CODE: IncomingError.error_code.expression,
        SortField.MESSAGE: message_sort_key(),
        SortField.SOURCE: IncomingError.source.expression,
        SortField.CREATED_AT: IncomingError.created_at.expression,
        SortField.LOGGED_AT: IncomingError.logged_at.expression,
    }
    return expressions[field]


def escape_like(text: str) -> str:
    """`text` with LIKE wildcards escaped, to match it literally (with ESCAPE LIKE_ESCAPE)."""
    return text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%").replace("_", LIKE_ESCAPE + "_")


def _filter_conditions(filters: IncomingErrorFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.source is not None:
        conditions.append(IncomingError.source == filters.source)
    if filters.error_code is not None:
        conditions.append(IncomingError.error_code == filters.error_code)
    if filters.request_id is not None:
        # Written on the indexed expression; the same as request_id = … for a non-empty value.
        conditions.append(request_id_sort_key() == filters.request_id)
    if filters.message_contains is not None:
        pattern = f"%{escape_like(filters.message_contains)}%"
        conditions.append(IncomingError.message.ilike(pattern, escape=LIKE_ESCAPE))
    if filters.created_from is not None:
        conditions.append(IncomingError.created_at >= filters.created_from)
    if filters.created_to is not None:
        conditions.append(IncomingError.created_at <= filters.created_to)
    if filters.logged_from is not None:
        conditions.append(IncomingError.logged_at >= filters.logged_from)
    if filters.logged_to is not None:
        conditions.append(IncomingError.logged_at <= filters.logged_to)
    return conditions


def _after(order: ListOrder, position: KeysetPosition) -> ColumnElement[bool]:
    """Rows strictly beyond `position` in the list's order (a row comparison the index can seek)."""
    if order.field is SortField.ID:
        return IncomingError.id < position.id if order.descending else IncomingError.id > position.id
    key = tuple_(sort_key(order.field), IncomingError.id)
    # A plain tuple on the right binds each value with its column's type.
    bound = (position.sort_value, position.id)
    return key < bound if order.descending else key > bound


def _estimate_prone_filters(
    filters: IncomingErrorFilters, order: ListOrder
) -> list[tuple[list[ColumnElement[bool]], int]]:
    """Each filter whose match count the planner tends to misjudge (see above), with its cap."""
    candidates: list[tuple[list[ColumnElement[bool]], int]] = []
    for field, column, start, end in (
        (SortField.CREATED_AT, IncomingError.created_at, filters.created_from, filters.created_to),
        (SortField.LOGGED_AT, IncomingError.logged_at, filters.logged_from, filters.logged_to),
    ):
        if order.field is field or (start is None and end is None):
            continue
        window = [column >= start] if start is not None else []
        candidates.append((window + ([column <= end] if end is not None else []), NARROW_WINDOW_ROWS))
    if filters.message_contains is not None and len(filters.message_contains) >= MIN_TRIGRAM_CHARS:
        message = _filter_conditions(IncomingErrorFilters(message_contains=filters.message_contains))
        candidates.append((message, NARROW_MESSAGE_MATCHES))
    return candidates


def page_statement(tenant_id: str, *, sort_after_filtering: bool = False, **page: Unpack[PageRequest]) -> Select[Any]:
    """The SELECT of one list page. With `sort_after_filtering` the matching rows are selected in a
    subquery PostgreSQL may not merge (OFFSET 0), so the filters pick the index and a sort follows."""
    order, after = page["order"], page["after"]
    conditions = [IncomingError.tenant_id == tenant_id, *_filter_conditions(page["filters"])]
    if after is not None:
        conditions.append(_after(order, position=after))
    entry_columns = (getattr(IncomingError, name) for name in IncomingErrorEntry.model_fields)
    rows = select(*entry_columns, sort_key(order.field).label("sort_value")).where(*conditions)
    key: ColumnElement[Any]
    entry_id: ColumnElement[Any]
    if sort_after_filtering:
        matching = rows.offset(0).subquery("matching")
        rows = select(*matching.c)
        key, entry_id = matching.c.sort_value, matching.c.id
    else:
        key, entry_id = sort_key(order.field), IncomingError.id.expression
    if order.field is SortField.ID:
        ordering = [entry_id.desc() if order.descending else entry_id.asc()]
    elif order.descending:
        ordering = [key.desc(), entry_id.desc()]
    else:
        ordering = [key.asc(), entry_id.asc()]
    return rows.order_by(*ordering).limit(page["limit"])


def expired_tenants_statement(cutoff: datetime) -> Select[Any]:
    """The tenants holding entries logged before `cutoff`: one index probe per tenant."""
    expired = select(IncomingError.id).where(IncomingError.tenant_id == Tenant.id, IncomingError.logged_at < cutoff)
    return select(Tenant.id).where(expired.exists()).order_by(Tenant.id)


def purge_batch_statement(tenant_id: str, cutoff: datetime, limit: int) -> Delete:
    """DELETE up to `limit` of the tenant's oldest entries logged before `cutoff`.

    Rows another purge has locked are skipped, so concurrent purges never wait on each other. The ids
    go through ARRAY(...) so they are looked up by primary key: `id IN (subquery)` let the planner
    hash-join against a sequential scan of the whole table.
    """
    oldest = (
        select(IncomingError.id)
        .where(IncomingError.tenant_id == tenant_id, IncomingError.logged_at < cutoff)
        .order_by(IncomingError.logged_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (
        delete(IncomingError)
        .where(IncomingError.id == any_(func.array(oldest.scalar_subquery())))
        .execution_options(synchronize_session=False)
    )


class IncomingErrorRepository:
    """The incoming error log of every tenant; each read is scoped to one tenant."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list_page(self, tenant_id: str, **page: Unpack[PageRequest]) -> list[IncomingErrorSummary]:
        """The entries of one page of the tenant's list (see PageRequest)."""
        statement = await self.page_query(tenant_id, **page)
        rows = (await self.session.execute(statement)).mappings().all()
        return [IncomingErrorSummary(**row) for row in rows]

    async def page_query(self, tenant_id: str, **page: Unpack[PageRequest]) -> Select[Any]:
        """The statement list_page runs: sorted after filtering when a misjudged filter is narrow."""
        narrow = await self._has_narrow_filter(tenant_id, page["filters"], page["order"])
        return page_statement(tenant_id, sort_after_filtering=narrow, **page)

    async def _has_narrow_filter(self, tenant_id: str, filters: IncomingErrorFilters, order: ListOrder) -> bool:
        for conditions, cap in _estimate_prone_filters(filters, order):
            capped = (
                select(IncomingError.id)
                .where(IncomingError.tenant_id == tenant_id, *conditions)
                .limit(cap + 1)
                .subquery()
            )
            matches = (await self.session.execute(select(func.count()).select_from(capped))).scalar_one()
            if matches <= cap:
                return True
        return False

    async def find(self, tenant_id: str, error_id: int) -> IncomingError | None:
        """One entry of the tenant, with its payload; None when absent or another tenant's."""
        statement = select(IncomingError).where(IncomingError.tenant_id == tenant_id, IncomingError.id == error_id)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def replayable_page(
        self, tenant_id: str, filters: IncomingErrorFilters, *, after_id: int | None, limit: int
    ) -> list[ReplayableEntry]:
        """Entries matching `filters` that can be replayed (see replayable_conditions), in id order."""
        conditions = [IncomingError.tenant_id == tenant_id, *replayable_conditions(), *_filter_conditions(filters)]
        if after_id is not None:
            conditions.append(IncomingError.id > after_id)
        rows = await self.session.execute(
            select(IncomingError.id, IncomingError.created_at, IncomingError.payload)
            .where(*conditions)
            .order_by(IncomingError.id)
            .limit(limit)
        )
        return [ReplayableEntry(*row) for row in rows]

    async def count_replayable(self, tenant_id: str, filters: IncomingErrorFilters) -> int:
        """How many entries matching `filters` can be replayed."""
        conditions = [IncomingError.tenant_id == tenant_id, *replayable_conditions(), *_filter_conditions(filters)]
        return int(await self.session.scalar(select(func.count()).select_from(IncomingError).where(*conditions)) or 0)

    async def tenants_with_entries_logged_before(self, cutoff: datetime) -> list[str]:
        """Ids of the tenants holding entries logged before `cutoff`."""
        return list((await self.session.execute(expired_tenants_statement(cutoff))).scalars())

    async def delete_logged_before(self, tenant_id: str, cutoff: datetime, *, limit: int) -> int:
        """Delete up to `limit` of the tenant's oldest entries logged before `cutoff`; the count deleted."""
        result = cast(CursorResult[Any], await self.session.execute(purge_batch_statement(tenant_id, cutoff, limit)))
        return result.rowcount
