"""Which customer a data subject request names: identity values and the order they are tried in."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from shared.mapping.data_subjects import subject_candidates, subject_values


@dataclass(frozen=True)
class Identity:
    value: str | None
    encoding: str | None = "raw"


def test_subject_values_keep_raw_non_empty_identities() -> None:
    identities = {
        "email": Identity("jane@example.com"),
        "controller_customer_id": Identity("C-1", encoding=None),
        "android_advertising_id": Identity("84aa", encoding="sha256"),
        "ios_advertising_id": Identity(""),
        "microsoft_publisher_id": Identity(None),
    }
    assert subject_values(identities) == {"email": "jane@example.com", "controller_customer_id": "C-1"}


BOTH = {"controller_customer_id": "C-1", "email": "jane@example.com"}


@pytest.mark.parametrize(
    ("pair", "values", "expected"),
    [
        pytest.param(("customer", "id"), BOTH, [("t", "id", "C-1"), ("t", "email", "jane@example.com")], id="default"),
        pytest.param(
            ("customer", "member_no"),
            BOTH,
            [("t", "member_no", "C-1"), ("t", "id", "C-1"), ("t", "email", "jane@example.com")],
            id="customer-identity-as-an-attribute",
        ),
        pytest.param(
            ("email", "mail"),
            BOTH,
            [("t", "mail", "jane@example.com"), ("t", "id", "C-1"), ("t", "email", "jane@example.com")],
            id="email-pair-first",
        ),
        pytest.param(("email", "email"), {"email": "j@x"}, [("t", "email", "j@x")], id="no-duplicates"),
        pytest.param(("other", "id"), {"email": "j@x"}, [("t", "email", "j@x")], id="pair-without-dsr-counterpart"),
        pytest.param(("customer", "id"), {"ios_advertising_id": "x"}, [], id="nothing-usable"),
    ],
)
def test_subject_candidates(
    pair: tuple[str, str], values: dict[str, str], expected: list[tuple[str, str, str]]
) -> None:
    assert subject_candidates("t", *pair, values) == expected
