"""Attribute templates: typed references, interpolation, literals, dotted paths, missing references."""

from __future__ import annotations

from typing import Any

import pytest

from shared.mapping.templates import MISSING, render_attributes, render_value, resolve_reference, walk_path

EVENT: dict[str, Any] = {
    "type": "product_action",
    "id": "e-1",
    "timestamp_ms": 1714592744066,
    "action": "purchase",
    "transaction_id": "T-1",
    "total_amount": 11,
    "tax_amount": 1.5,
    "currency_code": "USD",
    "is_gift": False,
    "note": None,
    "products": [
        {"id": "sku1", "name": "Mug", "price": 10, "attributes": {"k": "v"}},
        {"id": "sku2", "name": "Cup", "price": 4.5},
    ],
    "attributes": {
        "channel": "app",
        "points": "500",
        "currency_code": "EUR",
        "Acme.flag": "dotted-key",
        "nested": {"level": {"deep": [1, 2]}},
    },
}
BATCH: dict[str, Any] = {
    "type": "event_processing_request",
    "id": "req-1",
    "mpid": "8675309",
    "user_attributes": {"tier": "gold", "$FirstName": "Jane", "age": 41},
    "user_identities": [{"type": "customer", "encoding": "raw", "value": "C-1001"}],
    "events": [EVENT],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # exactly {path}: the referenced value with its JSON type
        pytest.param("{points}", "500", id="typed-attribute-string"),
        pytest.param("{total_amount}", 11, id="typed-event-field-int"),
        pytest.param("{tax_amount}", 1.5, id="typed-event-field-float"),
        pytest.param("{is_gift}", False, id="typed-bool"),
        pytest.param("{note}", None, id="typed-null-is-present"),
        pytest.param("{products}", EVENT["products"], id="typed-list"),
        pytest.param("{nested}", {"level": {"deep": [1, 2]}}, id="typed-object"),
        pytest.param("{ points }", "500", id="typed-whitespace-trimmed"),
        # attributes win over the event's own fields of the same name
        pytest.param("{currency_code}", "EUR", id="attribute-before-event-field"),
        pytest.param("{event.currency_code}", "USD", id="event-prefix-skips-attributes"),
        # a plain name is taken whole: attribute keys may contain dots
        pytest.param("{Acme.flag}", "dotted-key", id="dotted-attribute-key"),
        # dotted paths from the event and from the whole message
        pytest.param("{event.products.0.id}", "sku1", id="event-list-index"),
        pytest.param("{event.products.1.price}", 4.5, id="event-list-index-typed"),
        pytest.param("{event.products.0.attributes.k}", "v", id="event-deep-path"),
        pytest.param("{event.attributes.nested.level.deep.1}", 2, id="event-attributes-path"),
        pytest.param("{batch.user_attributes.tier}", "gold", id="batch-path"),
        pytest.param("{batch.user_attributes.age}", 41, id="batch-path-typed"),
        pytest.param("{batch.mpid}", "8675309", id="batch-top-level"),
        pytest.param("{batch.user_identities.0.value}", "C-1001", id="batch-list-index"),
        # interpolation: text, strings as they are, other values as JSON text
        pytest.param("order {transaction_id} in {event.currency_code}", "order T-1 in USD", id="interpolated"),
        pytest.param("{points} pts", "500 pts", id="interpolated-suffix"),
        pytest.param("{points}{channel}", "500app", id="two-placeholders-adjacent"),
        pytest.param("total={total_amount}", "total=11", id="interpolated-int"),
        pytest.param("gift={is_gift}", "gift=false", id="interpolated-bool"),
        pytest.param("note={note}", "note=null", id="interpolated-null"),
        pytest.param("p={event.products.0.attributes}", 'p={"k":"v"}', id="interpolated-object-as-json"),
        pytest.param("tier {batch.user_attributes.tier}", "tier gold", id="interpolated-batch"),
        # literals
        pytest.param("bonus", "bonus", id="literal-string"),
        pytest.param("", "", id="literal-empty-string"),
        pytest.param(42, 42, id="literal-int"),
        pytest.param(2.5, 2.5, id="literal-float"),
        pytest.param(True, True, id="literal-bool"),
        pytest.param(None, None, id="literal-null"),
        pytest.param(["{points}"], ["{points}"], id="literal-list-not-rendered"),
        pytest.param({"a": "{points}"}, {"a": "{points}"}, id="literal-object-not-rendered"),
        pytest.param("{}", "{}", id="empty-braces-literal"),
        pytest.param("{ }", "{ }", id="blank-braces-literal"),
        pytest.param("{unclosed", "{unclosed", id="unbalanced-open-literal"),
        pytest.param("closed}", "closed}", id="unbalanced-close-literal"),
        pytest.param("a {} b {points}", "a {} b 500", id="empty-braces-kept-in-interpolation"),
    ],
)
def test_render_value(template: Any, expected: Any) -> None:
    assert render_value(template, EVENT, BATCH) == expected


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{absent}", id="typed-missing-name"),
        pytest.param("{event.absent}", id="event-missing-field"),
        pytest.param("{event.products.5.id}", id="index-out-of-range"),
        pytest.param("{event.products.first.id}", id="non-numeric-index"),
        pytest.param("{event.products.-1.id}", id="negative-index"),
        pytest.param("{event.total_amount.value}", id="path-through-scalar"),
        pytest.param("{batch.user_attributes.absent}", id="batch-missing"),
        pytest.param("{batch.events.0.absent}", id="batch-deep-missing"),
        pytest.param("code {absent} here", id="interpolated-missing"),
        pytest.param("{points} and {absent}", id="one-of-two-missing"),
        pytest.param("{event.}", id="empty-path-segment"),
    ],
)
def test_missing_reference_is_missing(template: str) -> None:
    assert render_value(template, EVENT, BATCH) is MISSING


def test_render_attributes_omits_only_missing_ones() -> None:
    templates = {
        "points": "{points}",
        "amount": "{event.total_amount}",
        "label": "order {transaction_id}",
        "source": "mparticle",
        "weight": 3,
        "tier": "{batch.user_attributes.tier}",
        "coupon": "{coupon_code}",
        "coupon_text": "code: {coupon_code}",
        "note": "{note}",
    }
    assert render_attributes(templates, EVENT, BATCH) == {
        "points": "500",
        "amount": 11,
        "label": "order T-1",
        "source": "mparticle",
        "weight": 3,
        "tier": "gold",
        "note": None,
    }


@pytest.mark.parametrize(
    ("event", "reference", "expected"),
    [
        pytest.param({"attributes": {"x": 1}, "x": 2}, "x", 1, id="attributes-first"),
        pytest.param({"attributes": {"y": 1}, "x": 2}, "x", 2, id="event-field-fallback"),
        pytest.param({"attributes": None, "x": 2}, "x", 2, id="null-attributes"),
        pytest.param({"x": 2}, "x", 2, id="no-attributes"),
        pytest.param({"attributes": {"x": None}, "x": 2}, "x", None, id="null-attribute-is-present"),
        pytest.param({}, "x", MISSING, id="nowhere"),
    ],
)
def test_resolve_plain_name(event: dict[str, Any], reference: str, expected: Any) -> None:
    assert resolve_reference(reference, event, {}) == expected


@pytest.mark.parametrize(
    ("root", "path", "expected"),
    [
        pytest.param({"a": {"b": [10, {"c": "x"}]}}, "a.b.1.c", "x", id="mixed"),
        pytest.param({"a": [1, 2]}, "a.1", 2, id="index"),
        pytest.param({"a": [1, 2]}, "a.2", MISSING, id="index-past-end"),
        pytest.param({"a": "text"}, "a.0", MISSING, id="string-is-not-a-list"),
        pytest.param({"0": "zero"}, "0", "zero", id="numeric-key-in-object"),
        pytest.param([], "0", MISSING, id="empty-list"),
        pytest.param({"a": [1, 2]}, "a.\u00b2", MISSING, id="non-ascii-digit-is-no-index"),
    ],
)
def test_walk_path(root: Any, path: str, expected: Any) -> None:
    assert walk_path(root, path) == expected


def test_interpolates_integers_beyond_64_bits() -> None:
    event = {"attributes": {"big": 2**70}}
    assert render_value("n={big}", event, {}) == f"n={2**70}"
    assert render_value("{big}", event, {}) == 2**70
