"""Loyalty engine calls -> S2S batches: identities, sync fields, templates, limits, and S2S request chunking."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.errors import ErrorCode, Unprocessable
from shared.mapping.echo import echo_flags, is_echo
from shared.mapping.outbound import (
    OutboundDraft,
    build_user_attributes,
    build_user_identities,
    check_batch_size,
    custom_attribute_value,
    customer_update_draft,
    encode_batch,
    environment_for,
    event_draft,
    marketing_communication_draft,
    ordering_key,
    remote_attribute_name,
    render_custom_attributes,
    timestamp_ms,
    user_attribute_value,
)
from shared.mapping.outbound import SyncFieldRule as Sync
from shared.outbound.limits import (
    MAX_BATCH_BYTES,
    MAX_BULK_BATCHES,
    MAX_REQUEST_BYTES,
    bulk_request_size,
    plan_requests,
)


@dataclass(frozen=True)
class Rules:
    development: bool = False
    sync_only_configured_identifiers: bool = False
    loyalty_identifier_field: str = "id"
    customer_identifier_field: str = "customer_id"


@dataclass(frozen=True)
class External:
    loyalty_event: str
    event_name: str
    custom_event_type: str
    attributes: dict[str, Any] = field(default_factory=dict)


def sequential_ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


class TestUserIdentities:
    @pytest.mark.parametrize(
        ("customer", "rules", "expected"),
        [
            pytest.param({"id": "c1"}, Rules(), {"customer_id": "c1"}, id="id-only"),
            pytest.param(
                {"id": "c1", "email": "a@x.io"}, Rules(), {"customer_id": "c1", "email": "a@x.io"}, id="id-and-email"
            ),
            pytest.param({"id": 42}, Rules(), {"customer_id": "42"}, id="numeric-id-as-text"),
            pytest.param({"email": "a@x.io"}, Rules(), {"email": "a@x.io"}, id="email-without-id"),
            pytest.param({"id": "c1", "email": ""}, Rules(), {"customer_id": "c1"}, id="empty-email-skipped"),
            pytest.param(
                {"id": "c1", "email": "a@x.io", "card": "K-9"},
                Rules(loyalty_identifier_field="card", customer_identifier_field="other_id_3"),
                {"customer_id": "c1", "email": "a@x.io", "other_id_3": "K-9"},
                id="configured-pair-added",
            ),
            pytest.param(
                {"id": "c1", "email": "a@x.io", "card": "K-9"},
                Rules(
                    sync_only_configured_identifiers=True,
                    loyalty_identifier_field="card",
                    customer_identifier_field="other",
                ),
                {"other": "K-9"},
                id="sync-only-keeps-just-the-pair",
            ),
            pytest.param(
                {"id": "c1", "email": "a@x.io"},
                Rules(sync_only_configured_identifiers=True),
                {"customer_id": "c1"},
                id="sync-only-with-id-pair",
            ),
            pytest.param(
                {"id": "c1", "mobile": "+3620"},
                Rules(loyalty_identifier_field="mobile", customer_identifier_field="mobile_number"),
                {"customer_id": "c1", "mobile_number": "+3620"},
                id="mobile-number",
            ),
            pytest.param(
                {"id": "c1", "email": "a@x.io"},
                Rules(loyalty_identifier_field="id", customer_identifier_field="email"),
                {"customer_id": "c1", "email": "c1"},
                id="configured-pair-wins-over-default",
            ),
            pytest.param(
                {"id": "c1", "card": {"no": 1}},
                Rules(loyalty_identifier_field="card", customer_identifier_field="other"),
                {"customer_id": "c1"},
                id="object-value-is-no-identity",
            ),
        ],
    )
    def test_identity_rules(self, customer: dict[str, Any], rules: Rules, expected: dict[str, str]) -> None:
        assert build_user_identities(customer, rules) == expected

    @pytest.mark.parametrize(
        ("customer", "rules"),
        [
            pytest.param({}, Rules(), id="empty"),
            pytest.param({"id": "", "email": "  "}, Rules(), id="blank-values"),
            pytest.param({"id": None, "email": None}, Rules(), id="nulls"),
            pytest.param({"id": True}, Rules(), id="boolean-id"),
            pytest.param({"id": float("nan")}, Rules(), id="nan-id"),
            pytest.param(
                {"id": "c1", "email": "a@x.io"},
                Rules(sync_only_configured_identifiers=True, loyalty_identifier_field="card"),
                id="sync-only-without-the-field",
            ),
        ],
    )
    def test_no_identity_is_refused(self, customer: dict[str, Any], rules: Rules) -> None:
        with pytest.raises(Unprocessable) as raised:
            build_user_identities(customer, rules)
        assert raised.value.code == ErrorCode.NO_IDENTITY

    @pytest.mark.parametrize(
        ("customer", "identities", "expected"),
        [
            ({"id": "c1"}, {"customer_id": "c1"}, "c1"),
            ({"id": 7, "email": "a@x.io"}, {"customer_id": "7", "email": "a@x.io"}, "7"),
            ({"email": "a@x.io"}, {"email": "a@x.io"}, "a@x.io"),
            ({"card": "K"}, {"other": "K"}, "K"),
            ({"id": "x" * 128}, {"customer_id": "x" * 128}, "x" * 128),
            (
                {"email": "e" * 200},
                {"email": "e" * 200},
                "sha256:" + hashlib.sha256(("e" * 200).encode()).hexdigest(),
            ),
        ],
    )
    def test_ordering_key(self, customer: dict[str, Any], identities: dict[str, str], expected: str) -> None:
        assert ordering_key(customer, identities) == expected


class TestSyncFields:
    @pytest.mark.parametrize(
        ("remote_field", "expected"),
        [
            ("$firstname", "$firstname"),
            ("$FirstName", "$firstname"),
            ("$LASTNAME", "$lastname"),
            ("$Mobile", "$mobile"),
            ("$zip", "$zip"),
            ("antavo_tier", "antavo_tier"),
            ("Language", "Language"),
            ("$custom_not_reserved", "$custom_not_reserved"),
        ],
    )
    def test_remote_attribute_name(self, remote_field: str, expected: str) -> None:
        assert remote_attribute_name(remote_field) == expected

    @pytest.mark.parametrize(
        ("customer", "sync_fields", "expected"),
        [
            pytest.param(
                {"id": "c1", "first_name": "Jane", "last_name": "Doe", "score": 10},
                [Sync("first_name", "$FirstName"), Sync("last_name", "$lastname"), Sync("score", "antavo_score")],
                {"$firstname": "Jane", "$lastname": "Doe", "antavo_score": 10},
                id="reserved-and-custom",
            ),
            pytest.param(
                {"id": "c1", "first_name": "Jane"},
                [Sync("first_name", "$firstname"), Sync("city", "$city")],
                {"$firstname": "Jane"},
                id="absent-fields-not-sent",
            ),
            pytest.param(
                {"id": "c1", "city": None},
                [Sync("city", "$city")],
                {"$city": None},
                id="null-is-sent",
            ),
            pytest.param({"id": "c1"}, [Sync("id", "antavo_customer_id")], {"antavo_customer_id": "c1"}, id="id"),
            pytest.param(
                {"id": "c1", "tags": ["a", "b"], "address": {"zip": "1"}},
                [Sync("tags", "tags"), Sync("address", "address")],
                {"tags": ["a", "b"], "address": '{"zip":"1"}'},
                id="lists-kept-objects-as-text",
            ),
            pytest.param({"id": "c1"}, [], {}, id="no-sync-fields"),
        ],
    )
    def test_user_attributes(self, customer: dict[str, Any], sync_fields: list[Sync], expected: dict[str, Any]) -> None:
        assert build_user_attributes(customer, sync_fields) == expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("x", "x"),
            (1, 1),
            (1.5, 1.5),
            (True, True),
            (None, None),
            ([1, "a", None], [1, "a", None]),
            (2**63 - 1, 2**63 - 1),
            (2**63, str(2**63)),
            (-(2**64), str(-(2**64))),
            (float("nan"), "nan"),
            (float("inf"), "inf"),
            ([1, 2**70, float("-inf")], [1, str(2**70), "-inf"]),
            ({"big": 2**70}, '{"big":1180591620717411303424}'),
            ([[1]], "[[1]]"),
            ([{"a": 1}], '[{"a":1}]'),
            ({"b": 1, "a": 2}, '{"a":2,"b":1}'),
        ],
    )
    def test_user_attribute_values(self, value: Any, expected: Any) -> None:
        assert user_attribute_value(value) == expected


class TestCustomAttributes:
    DATA = {
        "points": 10,
        "reason": "birthday",
        "ratio": 0.5,
        "vip": True,
        "nothing": None,
        "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
        "address": {"city": "Pécs", "zip": "7621"},
        "dotted.key": "direct",
    }

    @pytest.mark.parametrize(
        ("templates", "expected"),
        [
            pytest.param({"antavo_points": "{points}"}, {"antavo_points": 10}, id="exact-keeps-number"),
            pytest.param({"vip": "{vip}", "n": "{nothing}"}, {"vip": True, "n": None}, id="exact-keeps-bool-null"),
            pytest.param({"r": "{ ratio }"}, {"r": 0.5}, id="spaces-inside-braces"),
            pytest.param({"sku": "{items.0.sku}"}, {"sku": "A-1"}, id="dotted-list-index"),
            pytest.param({"city": "{address.city}"}, {"city": "Pécs"}, id="dotted-object"),
            pytest.param({"d": "{dotted.key}"}, {"d": "direct"}, id="key-with-dot-wins"),
            pytest.param(
                {"text": "{points} points for {reason}"}, {"text": "10 points for birthday"}, id="interpolated"
            ),
            pytest.param({"text": "vip={vip}, n={nothing}"}, {"text": "vip=true, n=null"}, id="interpolated-json"),
            pytest.param(
                {"source": "loyalty", "n": 3, "f": False}, {"source": "loyalty", "n": 3, "f": False}, id="literals"
            ),
            pytest.param({"a": "{missing}", "b": "x {missing} y", "c": "{points}"}, {"c": 10}, id="missing-omitted"),
            pytest.param({"sku": "{items.5.sku}", "x": "{points.deeper}"}, {}, id="missing-paths"),
            pytest.param(
                {"items": "{items}"}, {"items": '[{"qty":2,"sku":"A-1"},{"qty":1,"sku":"B-2"}]'}, id="list-as-text"
            ),
            pytest.param({"address": "{address}"}, {"address": '{"city":"Pécs","zip":"7621"}'}, id="object-as-text"),
            pytest.param({"nested": {"a": 1}}, {"nested": '{"a":1}'}, id="object-literal-as-text"),
        ],
    )
    def test_templates_over_data(self, templates: dict[str, Any], expected: dict[str, Any]) -> None:
        assert render_custom_attributes(templates, self.DATA) == expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("a", "a"),
            (2, 2),
            (None, None),
            (2**64, str(2**64)),
            (float("nan"), "nan"),
            ([1, 2], "[1,2]"),
            ({"a": [1]}, '{"a":[1]}'),
            ({"é": "ü"}, '{"é":"ü"}'),
        ],
    )
    def test_custom_attribute_values_are_flat(self, value: Any, expected: Any) -> None:
        assert custom_attribute_value(value) == expected


class TestEnvironmentAndTimestamps:
    @pytest.mark.parametrize(("development", "expected"), [(True, "development"), (False, "production")])
    def test_environment(self, development: bool, expected: str) -> None:
        assert environment_for(development) == expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (1_700_000_000_000, 1_700_000_000_000),
            ("1700000000000", 1_700_000_000_000),
            (1_700_000_000_000.9, 1_700_000_000_000),
            ("2023-11-14T22:13:20Z", 1_700_000_000_000),
            ("2023-11-14T22:13:20.250+00:00", 1_700_000_000_250),
            ("2023-11-14T23:13:20+01:00", 1_700_000_000_000),
            ("2023-11-14T22:13:20", 1_700_000_000_000),
        ],
    )
    def test_timestamp_ms(self, value: Any, expected: int) -> None:
        assert timestamp_ms(value) == expected

    @pytest.mark.parametrize(
        "value", ["yesterday", "", "2023-13-01T00:00:00Z", -5, True, 10**30, str(10**30), float("nan"), float("inf")]
    )
    def test_invalid_timestamps(self, value: Any) -> None:
        with pytest.raises(ValueError):
            timestamp_ms(value)


class TestDrafts:
    def test_customer_update_batch(self) -> None:
        draft = customer_update_draft(
            {"id": "c1", "email": "a@x.io", "first_name": "Jane", "score": 5, "ignored": "x"},
            Rules(development=True),
            [Sync("first_name", "$FirstName"), Sync("score", "antavo_score")],
            sequential_ids(),
        )
        assert draft.kind == "customer_update"
        assert draft.customer_id == "c1"
        assert draft.batch == {
            "environment": "development",
            "source_request_id": "00000000-0000-4000-8000-000000000001",
            "user_identities": {"customer_id": "c1", "email": "a@x.io"},
            "user_attributes": {"$firstname": "Jane", "antavo_score": 5},
        }

    def test_event_batch_from_matching_external_events(self) -> None:
        externals = [
            External("point_add", "antavo_points", "transaction", {"points": "{points}", "why": "for {reason}"}),
            External("checkout", "antavo_checkout", "transaction"),
        ]
        draft = event_draft(
            {"id": "c1"},
            "point_add",
            {"points": 10, "reason": "birthday"},
            1_700_000_000_000,
            Rules(),
            externals,
            sequential_ids(),
        )
        assert draft is not None
        assert draft.kind == "event"
        assert draft.batch == {
            "environment": "production",
            "source_request_id": "00000000-0000-4000-8000-000000000002",
            "user_identities": {"customer_id": "c1"},
            "events": [
                {
                    "event_type": "custom_event",
                    "data": {
                        "event_name": "antavo_points",
                        "custom_event_type": "transaction",
                        "timestamp_unixtime_ms": 1_700_000_000_000,
                        "source_message_id": "00000000-0000-4000-8000-000000000001",
                        "custom_attributes": {"points": 10, "why": "for birthday"},
                        "custom_flags": {"LoyaltyBridge.Origin": "loyalty-bridge"},
                    },
                }
            ],
        }

    def test_every_matching_external_event_becomes_one_custom_event(self) -> None:
        externals = [External("point_add", "first", "other"), External("point_add", "second", "social")]
        draft = event_draft({"id": "c1"}, "point_add", {}, 1, Rules(), externals, sequential_ids())
        assert draft is not None
        assert [event["data"]["event_name"] for event in draft.batch["events"]] == ["first", "second"]
        message_ids = {event["data"]["source_message_id"] for event in draft.batch["events"]}
        assert len(message_ids) == 2

    @pytest.mark.parametrize("externals", [[], [External("checkout", "antavo_checkout", "transaction")]])
    def test_unmapped_action_is_skipped(self, externals: list[External]) -> None:
        assert event_draft({"id": "c1"}, "point_add", {}, 1, Rules(), externals, sequential_ids()) is None

    def test_event_without_identity_is_refused(self) -> None:
        with pytest.raises(Unprocessable) as raised:
            event_draft({}, "point_add", {}, 1, Rules(), [External("point_add", "p", "other")], sequential_ids())
        assert raised.value.code == ErrorCode.NO_IDENTITY

    def test_marketing_communication_batch(self) -> None:
        draft = marketing_communication_draft(
            {"id": 9, "email": "a@x.io", "card": "K"},
            "point_add",
            "user_preference",
            {"points": "10", "meta": {"a": 1}},
            1_700_000_000_000,
            Rules(
                sync_only_configured_identifiers=True,
                loyalty_identifier_field="card",
                customer_identifier_field="other",
            ),
            sequential_ids(),
        )
        assert draft.kind == "marketing_communication"
        assert draft.customer_id == "9"
        assert draft.batch["user_identities"] == {"other": "K"}
        assert draft.batch["events"] == [
            {
                "event_type": "custom_event",
                "data": {
                    "event_name": "point_add",
                    "custom_event_type": "user_preference",
                    "timestamp_unixtime_ms": 1_700_000_000_000,
                    "source_message_id": "00000000-0000-4000-8000-000000000001",
                    "custom_attributes": {"points": "10", "meta": '{"a":1}'},
                    "custom_flags": {"LoyaltyBridge.Origin": "loyalty-bridge"},
                },
            }
        ]


def _drafts_with_events() -> dict[str, OutboundDraft | None]:
    externals = [External("point_add", "first", "other"), External("point_add", "second", "social")]
    return {
        "event, one external event": event_draft(
            {"id": "c1"}, "point_add", {}, 1, Rules(), externals[:1], sequential_ids()
        ),
        "event, two external events": event_draft(
            {"id": "c1"}, "point_add", {}, 1, Rules(), externals, sequential_ids()
        ),
        "marketing communication": marketing_communication_draft(
            {"id": "c1"}, "mail", "other", {"a": 1}, 1, Rules(), sequential_ids()
        ),
        "marketing communication with its own flags in data": marketing_communication_draft(
            {"id": "c1"}, "mail", "other", {"custom_flags": "x"}, 1, Rules(), sequential_ids()
        ),
    }


class TestEchoMarker:
    """Every S2S event the bridge builds carries the echo marker, so the Firehose side can drop it
    when mParticle sends it back (shared/mapping/echo.py)."""

    @pytest.mark.parametrize("case", list(_drafts_with_events()))
    def test_every_event_carries_the_marker(self, case: str) -> None:
        draft = _drafts_with_events()[case]
        assert draft is not None
        events = draft.batch["events"]
        assert events
        for event in events:
            assert event["data"]["custom_flags"] == echo_flags()
            assert is_echo(event["data"])

    def test_a_customer_update_has_no_events_to_mark(self) -> None:
        draft = customer_update_draft({"id": "c1"}, Rules(), [], sequential_ids())
        assert "events" not in draft.batch


class TestSizeLimits:
    def _batch_of(self, size: int) -> dict[str, Any]:
        skeleton = {"environment": "production", "user_attributes": {"pad": ""}}
        padding = size - len(encode_batch(skeleton))
        return {"environment": "production", "user_attributes": {"pad": "x" * padding}}

    @pytest.mark.parametrize("size", [100, MAX_BATCH_BYTES - 1, MAX_BATCH_BYTES])
    def test_batches_up_to_128_kb_pass(self, size: int) -> None:
        batch = self._batch_of(size)
        assert len(encode_batch(batch)) == size
        check_batch_size(batch)

    @pytest.mark.parametrize("size", [MAX_BATCH_BYTES + 1, 2 * MAX_BATCH_BYTES])
    def test_larger_batches_are_refused(self, size: int) -> None:
        with pytest.raises(Unprocessable) as raised:
            check_batch_size(self._batch_of(size))
        assert raised.value.code == ErrorCode.BATCH_TOO_LARGE

    def test_oversized_customer_update_is_refused(self) -> None:
        with pytest.raises(Unprocessable) as raised:
            customer_update_draft(
                {"id": "c1", "bio": "x" * MAX_BATCH_BYTES}, Rules(), [Sync("bio", "bio")], sequential_ids()
            )
        assert raised.value.code == ErrorCode.BATCH_TOO_LARGE


class TestPlanRequests:
    @pytest.mark.parametrize(
        ("sizes", "expected"),
        [
            pytest.param([], [], id="nothing"),
            pytest.param([500], [[0]], id="single"),
            pytest.param([500, 600, 700], [[0, 1, 2]], id="small-ones-together"),
            pytest.param([1000] * 101, [list(range(100)), [100]], id="at-most-100-batches"),
            pytest.param([1000] * 250, [list(range(100)), list(range(100, 200)), list(range(200, 250))], id="250"),
            pytest.param([MAX_BATCH_BYTES, MAX_BATCH_BYTES, 10], [[0], [1, 2]], id="two-full-batches-never-together"),
            pytest.param([100_000, 100_000, 100_000], [[0, 1], [2]], id="under-256-kb"),
        ],
    )
    def test_groups(self, sizes: list[int], expected: list[list[int]]) -> None:
        assert plan_requests(sizes) == expected

    @pytest.mark.parametrize(
        "sizes",
        [
            [MAX_BATCH_BYTES // 2 - 1] * 5,
            [87_381] * 9,
            [1] * 1000,
            [(i * 7919) % MAX_BATCH_BYTES + 1 for i in range(300)],
        ],
    )
    def test_every_group_keeps_the_limits_and_the_order(self, sizes: list[int]) -> None:
        groups = plan_requests(sizes)
        assert [index for group in groups for index in group] == list(range(len(sizes)))
        for group in groups:
            assert len(group) <= MAX_BULK_BATCHES
            assert len(group) == 1 or bulk_request_size([sizes[i] for i in group]) < MAX_REQUEST_BYTES

    @pytest.mark.parametrize(("sizes", "expected"), [([], 2), ([10], 12), ([10, 20], 33), ([1, 1, 1], 7)])
    def test_bulk_request_size_counts_brackets_and_commas(self, sizes: list[int], expected: int) -> None:
        assert bulk_request_size(sizes) == expected
