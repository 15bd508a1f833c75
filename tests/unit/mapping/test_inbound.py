"""Inbound rules: mapping selection, request priority, ledger order, identifiers, customer resolution."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.mapping.echo import ECHO_FLAG, ECHO_FLAG_VALUE
from shared.mapping.inbound import (
    CUSTOMER_ID_NAMESPACE,
    CustomerAction,
    CustomerNeed,
    KnownCustomer,
    LedgerDraft,
    NewCustomer,
    ProfileChange,
    decide_customer,
    decide_customers,
    event_name_of,
    find_identifier,
    identifier_attributes,
    is_too_old,
    ledger_dedupe_key,
    mapping_matches,
    new_customer_id,
    plan_event_request,
    plan_ledger_entries,
    profile_changes,
    request_priority,
    resolve_identifier,
    timestamp_ms_to_datetime,
)

RECEIVED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Mapping:
    loyalty_event: str
    event_type: str
    event_name: str | None = None
    priority: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)


CUSTOM = {"type": "custom_event", "id": "e-custom", "name": "points_redeemed", "attributes": {"points": "500"}}
SCREEN = {"type": "screen_view", "id": "e-screen", "screen_name": "Rewards"}
PURCHASE = {"type": "product_action", "id": "e-purchase", "action": "purchase", "total_amount": 11}
PROMO = {"type": "promotion_action", "id": "e-promo", "action": "click"}
SESSION = {"type": "session_start", "id": "e-session"}


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(CUSTOM, "points_redeemed", id="custom_event-name"),
        pytest.param(SCREEN, "Rewards", id="screen_view-screen_name"),
        pytest.param(PURCHASE, "purchase", id="product_action-action"),
        pytest.param(PROMO, "click", id="promotion_action-action"),
        pytest.param(SESSION, None, id="session_start-has-none"),
        pytest.param({"type": "custom_event"}, None, id="custom_event-without-name"),
        pytest.param({"type": "custom_event", "name": 5}, None, id="non-string-name"),
        pytest.param({"type": "screen_view", "name": "x"}, None, id="wrong-field-for-type"),
    ],
)
def test_event_name_of(event: dict[str, Any], expected: str | None) -> None:
    assert event_name_of(event) == expected


@pytest.mark.parametrize(
    ("mapping", "event", "matches"),
    [
        pytest.param(Mapping("x", "custom_event"), CUSTOM, True, id="type-only"),
        pytest.param(Mapping("x", "custom_event", "points_redeemed"), CUSTOM, True, id="type-and-name"),
        pytest.param(Mapping("x", "custom_event", "other"), CUSTOM, False, id="other-name"),
        pytest.param(Mapping("x", "custom_event", "Points_Redeemed"), CUSTOM, False, id="name-case-sensitive"),
        pytest.param(Mapping("x", "screen_view"), CUSTOM, False, id="other-type"),
        pytest.param(Mapping("x", "screen_view", "Rewards"), SCREEN, True, id="screen-name"),
        pytest.param(Mapping("x", "product_action", "purchase"), PURCHASE, True, id="product-action"),
        pytest.param(Mapping("x", "product_action", "refund"), PURCHASE, False, id="other-action"),
        pytest.param(Mapping("x", "promotion_action", "click"), PROMO, True, id="promotion-action"),
        pytest.param(Mapping("x", "session_start"), SESSION, True, id="session-type-only"),
        pytest.param(Mapping("x", "session_start", "any"), SESSION, False, id="name-on-nameless-type"),
    ],
)
def test_mapping_matches(mapping: Mapping, event: dict[str, Any], matches: bool) -> None:
    assert mapping_matches(mapping, event) is matches


@pytest.mark.parametrize(
    ("mappings", "events", "expected"),
    [
        pytest.param([], [CUSTOM], None, id="no-mappings"),
        pytest.param([Mapping("x", "custom_event", priority=5)], [], None, id="no-events"),
        pytest.param([Mapping("x", "screen_view", priority=5)], [CUSTOM], None, id="nothing-matches"),
        pytest.param([Mapping("x", "custom_event", priority=5)], [CUSTOM], 5, id="one-match"),
        pytest.param(
            [Mapping("a", "custom_event", priority=50), Mapping("b", "product_action", priority=7)],
            [CUSTOM, PURCHASE],
            7,
            id="lowest-of-matching",
        ),
        pytest.param(
            [Mapping("a", "custom_event", priority=50), Mapping("b", "screen_view", priority=1)],
            [CUSTOM, PURCHASE],
            50,
            id="unmatched-low-priority-ignored",
        ),
        pytest.param(
            [Mapping("a", "custom_event", "other", priority=0), Mapping("b", "custom_event", priority=900)],
            [CUSTOM],
            900,
            id="name-filter-respected",
        ),
        pytest.param([Mapping("a", "session_start", priority=0)], [SESSION, SESSION], 0, id="priority-zero"),
    ],
)
def test_request_priority(mappings: list[Mapping], events: list[dict[str, Any]], expected: int | None) -> None:
    assert request_priority(mappings, events) == expected


def _message(*events: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "event_processing_request", "id": "req-1", "timestamp_ms": 1714592700000, "events": list(events)}


def _actions(drafts: list[LedgerDraft]) -> list[tuple[str, str | None]]:
    return [(draft.action, draft.source_event_id) for draft in drafts]


@pytest.mark.parametrize(
    ("mappings", "events", "expected"),
    [
        pytest.param([Mapping("a", "screen_view")], [CUSTOM], [], id="nothing-matches"),
        pytest.param(
            [Mapping("a", "custom_event"), Mapping("b", "custom_event", "points_redeemed")],
            [CUSTOM],
            [("a", "e-custom"), ("b", "e-custom")],
            id="every-matching-mapping-of-an-event",
        ),
        pytest.param(
            [Mapping("late", "custom_event", priority=9), Mapping("early", "product_action", priority=1)],
            [CUSTOM, PURCHASE],
            [("early", "e-purchase"), ("late", "e-custom")],
            id="ascending-priority-across-events",
        ),
        pytest.param(
            [Mapping("c", "custom_event", priority=3), Mapping("p", "product_action", priority=3)],
            [PURCHASE, CUSTOM],
            [("p", "e-purchase"), ("c", "e-custom")],
            id="ties-in-event-order",
        ),
        pytest.param(
            [Mapping("second", "custom_event", priority=3), Mapping("first", "custom_event", priority=2)],
            [CUSTOM],
            [("first", "e-custom"), ("second", "e-custom")],
            id="one-event-two-priorities",
        ),
        pytest.param(
            [Mapping("m1", "custom_event", priority=4), Mapping("m2", "custom_event", priority=4)],
            [CUSTOM],
            [("m1", "e-custom"), ("m2", "e-custom")],
            id="same-event-same-priority-mapping-order",
        ),
        pytest.param(
            [Mapping("s", "session_start", priority=5), Mapping("v", "screen_view", priority=0)],
            [SESSION, SCREEN, SESSION | {"id": "e-session-2"}],
            [("v", "e-screen"), ("s", "e-session"), ("s", "e-session-2")],
            id="interleaved",
        ),
    ],
)
def test_plan_ledger_entries_order(
    mappings: list[Mapping], events: list[dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    drafts = plan_ledger_entries(_message(*events), mappings, request_id="req-1", received_at=RECEIVED_AT)
    assert _actions(drafts) == expected


def test_plan_ledger_entries_fields() -> None:
    mappings = [
        Mapping("ignored", "screen_view"),
        Mapping("points_redeemed", "custom_event", priority=2, attributes={"points": "{points}", "src": "app"}),
    ]
    event_without_time = {"type": "custom_event", "name": "x"}
    drafts = plan_ledger_entries(
        _message(CUSTOM | {"timestamp_ms": 1714592744066}, event_without_time),
        mappings,
        request_id="req-1",
        received_at=RECEIVED_AT,
    )
    assert drafts == [
        LedgerDraft(
            action="points_redeemed",
            data={"points": "500", "src": "app"},
            source_event_id="e-custom",
            dedupe_key="req-1/e-custom/1",
            occurred_at=datetime(2024, 5, 1, 19, 45, 44, 66000, tzinfo=UTC),
            priority=2,
        ),
        LedgerDraft(
            action="points_redeemed",
            data={"src": "app"},
            source_event_id=None,
            dedupe_key="req-1/#1/1",
            occurred_at=datetime(2024, 5, 1, 19, 45, tzinfo=UTC),  # the message's timestamp
            priority=2,
        ),
    ]


def test_occurred_at_falls_back_to_received_at() -> None:
    message = {"type": "event_processing_request", "id": "r", "events": [{"type": "session_start"}]}
    drafts = plan_ledger_entries(message, [Mapping("s", "session_start")], request_id="r", received_at=RECEIVED_AT)
    assert [draft.occurred_at for draft in drafts] == [RECEIVED_AT]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(0, datetime(1970, 1, 1, tzinfo=UTC), id="epoch"),
        pytest.param(1714592744066, datetime(2024, 5, 1, 19, 45, 44, 66000, tzinfo=UTC), id="ms"),
        pytest.param(None, None, id="absent"),
        pytest.param("1714592744066", None, id="string"),
        pytest.param(True, None, id="bool"),
        pytest.param(10**20, None, id="absurd"),
    ],
)
def test_timestamp_ms_to_datetime(value: Any, expected: datetime | None) -> None:
    assert timestamp_ms_to_datetime(value) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(("r", "e", 0, 3), "r/e/3", id="event-id"),
        pytest.param(("r", None, 4, 0), "r/#4/0", id="event-index-without-id"),
        pytest.param(("r", "", 2, 1), "r/#2/1", id="empty-id-uses-index"),
    ],
)
def test_ledger_dedupe_key(args: tuple[Any, ...], expected: str) -> None:
    assert ledger_dedupe_key(*args) == expected


def _identities(*entries: tuple[str, str, str]) -> list[dict[str, str]]:
    return [{"type": kind, "encoding": encoding, "value": value} for kind, encoding, value in entries]


@pytest.mark.parametrize(
    ("holder", "field", "value"),
    [
        pytest.param({"mpid": "12345"}, "mpid", "12345", id="mpid"),
        pytest.param({}, "mpid", None, id="mpid-absent"),
        pytest.param({"mpid": ""}, "mpid", None, id="mpid-empty"),
        pytest.param({"user_identities": _identities(("customer", "raw", "C-1"))}, "customer", "C-1", id="customer"),
        pytest.param(
            {"user_identities": _identities(("email", "raw", "a@x"), ("customer", "raw", "C-1"))},
            "email",
            "a@x",
            id="email-among-others",
        ),
        pytest.param(
            {"user_identities": _identities(("other2", "raw", "o2"), ("other", "raw", "o1"))},
            "other",
            "o1",
            id="other-not-other2",
        ),
        pytest.param(
            {"user_identities": [{"type": "customer", "value": "C-2"}]}, "customer", "C-2", id="encoding-absent-is-raw"
        ),
        pytest.param(
            {"user_identities": _identities(("customer", "md5", "abc"), ("customer", "raw", "C-3"))},
            "customer",
            "C-3",
            id="raw-preferred-over-hashed",
        ),
        pytest.param({"user_identities": _identities(("customer", "md5", "abc"))}, "customer", None, id="hashed-only"),
        pytest.param({"user_identities": _identities(("email", "raw", "a@x"))}, "customer", None, id="type-absent"),
        pytest.param({"user_identities": []}, "customer", None, id="no-identities"),
        pytest.param({"mpid": "12345"}, "customer", None, id="mpid-is-not-customer"),
    ],
)
def test_find_identifier(holder: dict[str, Any], field: str, value: str | None) -> None:
    lookup = find_identifier(holder, field)
    assert lookup.value == value
    assert (lookup.problem is None) is (value is not None)


def test_hashed_identity_problem_names_the_encoding() -> None:
    lookup = find_identifier({"user_identities": _identities(("email", "sha256", "f00"))}, "email")
    assert lookup.problem is not None and "sha256" in lookup.problem


@pytest.mark.parametrize(
    ("loyalty_field", "value", "accepted"),
    [
        pytest.param("id", "x" * 128, True, id="id-at-limit"),
        pytest.param("id", "x" * 129, False, id="id-too-long"),
        pytest.param("email", "x" * 300, True, id="attribute-any-length"),
    ],
)
def test_resolve_identifier_length(loyalty_field: str, value: str, accepted: bool) -> None:
    holder = {"user_identities": _identities(("customer", "raw", value))}
    assert (resolve_identifier(holder, "customer", loyalty_field).value is not None) is accepted


@pytest.mark.parametrize(
    ("existing", "opt_in", "auto_subscribe", "expected"),
    [
        pytest.param("active", False, False, CustomerAction.USE_EXISTING, id="known-active"),
        pytest.param("inactive", False, False, CustomerAction.USE_EXISTING, id="known-inactive"),
        pytest.param("inactive", True, True, CustomerAction.USE_EXISTING, id="known-with-opt-in"),
        pytest.param(None, True, False, CustomerAction.CREATE_ACTIVE, id="unknown-opt-in"),
        pytest.param(None, True, True, CustomerAction.CREATE_ACTIVE, id="opt-in-wins-over-auto-subscribe"),
        pytest.param(None, False, True, CustomerAction.CREATE_INACTIVE, id="unknown-auto-subscribe"),
        pytest.param(None, False, False, CustomerAction.REJECT, id="unknown-rejected"),
    ],
)
def test_decide_customer(existing: str | None, opt_in: bool, auto_subscribe: bool, expected: CustomerAction) -> None:
    assert decide_customer(existing, yields_opt_in=opt_in, auto_subscribe=auto_subscribe) is expected


@pytest.mark.parametrize(
    ("tenant", "field", "value", "expected"),
    [
        pytest.param("t1", "id", "C-1", "C-1", id="id-field-uses-value"),
        pytest.param("t1", "email", "a@x", str(uuid.uuid5(CUSTOMER_ID_NAMESPACE, "t1/email/a@x")), id="generated"),
    ],
)
def test_new_customer_id(tenant: str, field: str, value: str, expected: str) -> None:
    assert new_customer_id(tenant, field, value) == expected


def test_generated_ids_differ_by_tenant_field_and_value() -> None:
    ids = {
        new_customer_id("t1", "email", "a@x"),
        new_customer_id("t2", "email", "a@x"),
        new_customer_id("t1", "member", "a@x"),
        new_customer_id("t1", "email", "b@x"),
    }
    assert len(ids) == 4
    assert new_customer_id("t1", "email", "a@x") == new_customer_id("t1", "email", "a@x")


@pytest.mark.parametrize(
    ("field", "expected"),
    [pytest.param("id", {}, id="id"), pytest.param("email", {"email": "v"}, id="attribute")],
)
def test_identifier_attributes(field: str, expected: dict[str, str]) -> None:
    assert identifier_attributes(field, "v") == expected


def _draft(action: str, key: str, **data: Any) -> LedgerDraft:
    return LedgerDraft(action, data, None, key, RECEIVED_AT, 0)


T = "t1"


@pytest.mark.parametrize(
    ("ledger", "recorded", "statuses", "expected"),
    [
        pytest.param([], set(), {}, [], id="nothing"),
        pytest.param(
            [((T, "c1"), [_draft("purchase", "k1", a=1)])], {(T, "k1")}, {}, [], id="other-actions-not-merged"
        ),
        pytest.param(
            [((T, "c1"), [_draft("profile", "k1", a=1)])],
            {(T, "k1")},
            {(T, "c1"): "active"},
            [ProfileChange(T, "c1", {"a": 1}, False)],
            id="profile-merges",
        ),
        pytest.param(
            [((T, "c1"), [_draft("opt_in", "k1", a=1)])],
            {(T, "k1")},
            {(T, "c1"): "inactive"},
            [ProfileChange(T, "c1", {"a": 1}, True)],
            id="opt-in-activates-inactive",
        ),
        pytest.param(
            [((T, "c1"), [_draft("opt_in", "k1")])],
            {(T, "k1")},
            {(T, "c1"): "active"},
            [ProfileChange(T, "c1", {}, False)],
            id="opt-in-of-active-customer",
        ),
        pytest.param(
            [((T, "c1"), [_draft("opt_in", "k1", a=1)])],
            set(),
            {(T, "c1"): "inactive"},
            [],
            id="already-recorded-changes-nothing",
        ),
        pytest.param(
            [((T, "c1"), [_draft("profile", "k1", a=1, b=1), _draft("opt_in", "k2", b=2, c=2)])],
            {(T, "k1"), (T, "k2")},
            {(T, "c1"): "inactive"},
            [ProfileChange(T, "c1", {"a": 1, "b": 2, "c": 2}, True)],
            id="later-wins",
        ),
        pytest.param(
            [((T, "c1"), [_draft("profile", "k1", a=1), _draft("profile", "k2", a=2)])],
            {(T, "k1")},
            {},
            [ProfileChange(T, "c1", {"a": 1}, False)],
            id="only-recorded-rows",
        ),
        pytest.param(
            [((T, "c1"), [_draft("profile", "k1", a=1)]), ((T, "c1"), [_draft("profile", "k2", a=2, b=2)])],
            {(T, "k1"), (T, "k2")},
            {},
            [ProfileChange(T, "c1", {"a": 2, "b": 2}, False)],
            id="requests-of-one-customer-merge-in-ledger-order",
        ),
        pytest.param(
            [((T, "c1"), [_draft("profile", "k1", a=1)]), ((T, "c2"), [_draft("opt_in", "k2", b=2)])],
            {(T, "k1"), (T, "k2")},
            {(T, "c2"): "inactive"},
            [ProfileChange(T, "c1", {"a": 1}, False), ProfileChange(T, "c2", {"b": 2}, True)],
            id="each-customer-its-own",
        ),
        pytest.param(
            [(("t2", "c1"), [_draft("profile", "k1", a=1)])],
            {(T, "k1")},
            {},
            [],
            id="dedupe-keys-are-per-tenant",
        ),
    ],
)
def test_profile_changes(
    ledger: list[tuple[tuple[str, str], list[LedgerDraft]]],
    recorded: set[tuple[str, str]],
    statuses: dict[tuple[str, str], str],
    expected: list[ProfileChange],
) -> None:
    assert profile_changes(ledger, recorded, statuses) == expected


def _need(value: str, *, opt_in: bool = False, auto: bool = False, create: bool = True) -> CustomerNeed:
    return CustomerNeed((T, "id", value), yields_opt_in=opt_in, auto_subscribe=auto, may_create=create)


@pytest.mark.parametrize(
    ("needs", "found", "ids", "created"),
    [
        pytest.param([_need("c1")], {(T, "id", "c1"): KnownCustomer("c1", "inactive")}, ["c1"], [], id="known"),
        pytest.param([_need("c1")], {}, [None], [], id="unknown-rejected"),
        pytest.param([_need("c1", auto=True)], {}, ["c1"], [("c1", "inactive")], id="auto-subscribe"),
        pytest.param([_need("c1", opt_in=True)], {}, ["c1"], [("c1", "active")], id="opt-in-creates-active"),
        pytest.param([_need("c1", auto=True, create=False)], {}, [None], [], id="look-up-only"),
        pytest.param(
            [_need("c1", auto=True), _need("c1", opt_in=True), _need("c1")],
            {},
            ["c1", "c1", "c1"],
            [("c1", "inactive")],
            id="first-creator-decides-later-ones-use-it",
        ),
        pytest.param(
            [_need("c1"), _need("c1", opt_in=True)],
            {},
            [None, "c1"],
            [("c1", "active")],
            id="rejected-before-created",
        ),
        pytest.param(
            [_need("c1", create=False), _need("c1", auto=True), _need("c1", create=False)],
            {},
            [None, "c1", "c1"],
            [("c1", "inactive")],
            id="look-up-finds-one-created-earlier-only",
        ),
    ],
)
def test_decide_customers(
    needs: list[CustomerNeed], found: dict[Any, KnownCustomer], ids: list[str | None], created: list[tuple[str, str]]
) -> None:
    decisions = decide_customers(needs, found)
    assert decisions.customer_ids == ids
    assert [(new.id, new.status) for new in decisions.to_create] == created


def test_decide_customers_creates_attribute_identified_customers_with_the_attribute() -> None:
    need = CustomerNeed((T, "email", "a@x"), yields_opt_in=True, auto_subscribe=False)
    [new] = decide_customers([need], {}).to_create
    assert new == NewCustomer(T, new_customer_id(T, "email", "a@x"), "active", {"email": "a@x"})


HOUR_MS = 3_600_000
RECEIVED_MS = int(RECEIVED_AT.timestamp() * 1000)


@pytest.mark.parametrize(
    ("age_ms", "max_hours", "too_old"),
    [
        pytest.param(0, 24, False, id="fresh"),
        pytest.param(24 * HOUR_MS, 24, False, id="exactly-the-limit"),
        pytest.param(24 * HOUR_MS + 1, 24, True, id="just-over"),
        pytest.param(2 * HOUR_MS, 1, True, id="small-limit"),
        pytest.param(10 * 365 * 24 * HOUR_MS, -1, False, id="any-age"),
        pytest.param(-HOUR_MS, 24, False, id="from-the-future"),
    ],
)
def test_is_too_old(age_ms: int, max_hours: int, too_old: bool) -> None:
    occurred_at = datetime.fromtimestamp((RECEIVED_MS - age_ms) / 1000, tz=UTC)
    assert is_too_old(occurred_at, RECEIVED_AT, max_hours) is too_old


ECHO = {ECHO_FLAG: ECHO_FLAG_VALUE}


@pytest.mark.parametrize(
    ("events", "max_hours", "actions", "too_old", "echoes"),
    [
        pytest.param([{"type": "custom_event", "name": "a"}], 24, ["a"], 0, 0, id="no-timestamp-uses-message-time"),
        pytest.param(
            [{"type": "custom_event", "name": "a", "timestamp_ms": RECEIVED_MS - 25 * HOUR_MS}],
            24,
            [],
            1,
            0,
            id="too-old",
        ),
        pytest.param(
            [{"type": "custom_event", "name": "a", "timestamp_ms": RECEIVED_MS - 25 * HOUR_MS}],
            -1,
            ["a"],
            0,
            0,
            id="any-age",
        ),
        pytest.param(
            [{"type": "session_start", "timestamp_ms": 1}],
            24,
            [],
            0,
            0,
            id="unmapped-old-events-are-not-counted",
        ),
        pytest.param(
            [{"type": "custom_event", "name": "a", "custom_flags": ECHO}, {"type": "custom_event", "name": "b"}],
            24,
            ["b"],
            0,
            1,
            id="echo-dropped",
        ),
        pytest.param(
            [{"type": "custom_event", "name": "a", "custom_flags": {ECHO_FLAG: "someone-else"}}],
            24,
            ["a"],
            0,
            0,
            id="other-flag-value-is-no-echo",
        ),
    ],
)
def test_plan_event_request_leaves_out_old_and_echoed_events(
    events: list[dict[str, Any]], max_hours: int, actions: list[str], too_old: int, echoes: int
) -> None:
    mappings = [Mapping("a", "custom_event", "a"), Mapping("b", "custom_event", "b")]
    message = {"timestamp_ms": RECEIVED_MS, "events": events}
    plan = plan_event_request(message, mappings, request_id="r", received_at=RECEIVED_AT, max_data_age_hours=max_hours)
    assert [draft.action for draft in plan.drafts] == actions
    assert (plan.too_old_events, plan.echo_events) == (too_old, echoes)


def test_left_out_events_do_not_shift_dedupe_keys() -> None:
    old = {"type": "custom_event", "name": "a", "timestamp_ms": RECEIVED_MS - 48 * HOUR_MS}
    echo = {"type": "custom_event", "name": "a", "custom_flags": ECHO}
    kept = {"type": "custom_event", "name": "a", "timestamp_ms": RECEIVED_MS}
    message = {"events": [old, echo, kept]}
    plan = plan_event_request(
        message, [Mapping("a", "custom_event")], request_id="r", received_at=RECEIVED_AT, max_data_age_hours=24
    )
    assert [draft.dedupe_key for draft in plan.drafts] == ["r/#2/0"]
