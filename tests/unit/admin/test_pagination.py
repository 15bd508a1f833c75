"""The one cursor pagination helper of every admin list: pages, cursor positions, and the cursors
issued before the helper existed (same encoding, so they keep working)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.pagination import cursor_position, encode_cursor, page_of
from shared.errors import Unprocessable

# Cursors as the lists issued them before the helper: tenants and outbound messages boxed the
# position in a one-item list, records and data subject requests did not.
ISSUED_TENANT_CURSOR = "WyJ0ZW5hbnQtYSJd"  # ["tenant-a"]
ISSUED_MESSAGE_CURSOR = "WzQyXQ"  # [42]
ISSUED_CUSTOMER_CURSOR = "ImMtMTAi"  # "c-10"
ISSUED_LEDGER_CURSOR = "Nw"  # 7


class TestCursorPosition:
    @pytest.mark.parametrize(
        ("cursor", "kind", "boxed", "expected"),
        [
            (None, int, False, None),
            (None, str, True, None),
            (ISSUED_TENANT_CURSOR, str, True, "tenant-a"),
            (ISSUED_MESSAGE_CURSOR, int, True, 42),
            (ISSUED_CUSTOMER_CURSOR, str, False, "c-10"),
            (ISSUED_LEDGER_CURSOR, int, False, 7),
            (
                encode_cursor({"sort": "-logged_at", "after": ["x", 1]}),
                dict,
                False,
                {"sort": "-logged_at", "after": ["x", 1]},
            ),
        ],
    )
    def test_reads_the_position_a_list_issued(self, cursor: str | None, kind: type, boxed: bool, expected: Any) -> None:
        assert cursor_position(cursor, kind, boxed=boxed) == expected

    @pytest.mark.parametrize(
        ("position", "kind", "boxed"),
        [
            (True, int, False),  # a boolean is no int
            ([True], int, True),
            ("7", int, False),
            (7, str, False),
            ([7], int, False),  # boxed where the list expects a bare value
            (7, int, True),  # bare where the list expects a boxed one
            ([7, 8], int, True),
            ([], int, True),
            ({"after": 1}, str, False),
        ],
    )
    def test_refuses_a_position_of_another_shape(self, position: Any, kind: type, boxed: bool) -> None:
        with pytest.raises(Unprocessable, match="invalid cursor"):
            cursor_position(encode_cursor(position), kind, boxed=boxed)

    @pytest.mark.parametrize("cursor", ["not base64 !", "e30", "bm90IGpzb24"])  # "{}" is valid JSON, not an int
    def test_refuses_garbage(self, cursor: str) -> None:
        with pytest.raises(Unprocessable):
            cursor_position(cursor, int)


class TestPageOf:
    @pytest.mark.parametrize(
        ("rows", "limit", "items", "next_position"),
        [
            ([], 3, [], None),
            ([1, 2], 3, [10, 20], None),
            ([1, 2, 3], 3, [10, 20, 30], None),
            ([1, 2, 3, 4], 3, [10, 20, 30], [3]),
            ([1, 2], 1, [10], [1]),
        ],
    )
    def test_serves_limit_rows_and_a_cursor_only_when_more_follow(
        self, rows: list[int], limit: int, items: list[int], next_position: list[int] | None
    ) -> None:
        page = page_of(rows, limit, lambda row: row * 10, lambda row: [row])
        assert page.items == items
        if next_position is None:
            assert page.next_cursor is None
        else:
            assert page.next_cursor is not None
            assert cursor_position(page.next_cursor, int, boxed=True) == next_position[0]

    def test_a_page_cursor_continues_where_the_page_ended(self) -> None:
        rows = [f"c-{n}" for n in range(5)]
        first = page_of(rows[:3], 2, str.upper, lambda row: row)
        after = cursor_position(first.next_cursor, str)
        assert first.items == ["C-0", "C-1"]
        assert after == "c-1"
        assert [row for row in rows if row > after][:2] == ["c-2", "c-3"]
