"""NUL characters replaced with U+FFFD wherever they hide in a decoded JSON value."""

from __future__ import annotations

from typing import Any

import pytest

from shared.mapping.sanitize import scrub_nul

R = "\ufffd"


@pytest.mark.parametrize(
    ("value", "expected", "changed"),
    [
        pytest.param("plain", "plain", False, id="string-without-nul"),
        pytest.param("a\x00b\x00", f"a{R}b{R}", True, id="string"),
        pytest.param(42, 42, False, id="number"),
        pytest.param(None, None, False, id="null"),
        pytest.param(True, True, False, id="boolean"),
        pytest.param({"k": "v\x00"}, {"k": f"v{R}"}, True, id="dict-value"),
        pytest.param({"k\x00": "v"}, {f"k{R}": "v"}, True, id="dict-key"),
        pytest.param([["\x00"], 1], [[R], 1], True, id="nested-list"),
        pytest.param({"a": [{"b": "\x00"}]}, {"a": [{"b": R}]}, True, id="deep"),
        pytest.param({"a": [1, "x"]}, {"a": [1, "x"]}, False, id="nothing-to-replace"),
    ],
)
def test_scrub_nul(value: Any, expected: Any, changed: bool) -> None:
    assert scrub_nul(value) == (expected, changed)


def test_untouched_values_are_returned_as_they_are() -> None:
    value = {"a": [1, {"b": "c"}]}
    assert scrub_nul(value)[0] is value


def test_the_input_is_not_modified() -> None:
    value = {"a": ["\x00"]}
    scrub_nul(value)
    assert value == {"a": ["\x00"]}
