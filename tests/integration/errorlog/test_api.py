"""The incoming error log over HTTP (CONTRACT §4, §5): filters, sorts, cursor pages, entries and
payload downloads, tenant isolation and the admin key, against the real PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errorlog import repository as incoming_errors_repository
from shared.errorlog.writer import record_incoming_error
from shared.errors import ErrorCode, ErrorSource
from shared.models import IncomingError
from tests.factories import make_tenant

BASE_AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SORT_FIELDS = ("id", "request_id", "error_code", "message", "source", "created_at", "logged_at")
ITEM_FIELDS = {
    "id",
    "request_id",
    "error_code",
    "message",
    "source",
    "created_at",
    "logged_at",
    "replayed_at",
    "replay_outcome",
}


@dataclass(frozen=True)
class Seed:
    request_id: str | None
    error_code: str
    message: str
    source: str
    created_minutes: int
    logged_minutes: int
    payload: Any = None


# Ties on every field (same code, source, message, created_at, logged_at, NULL request ids) so the
# id tie-break is exercised; values sort alike under any collation (they differ at a letter).
SEEDS = [
    Seed("req-a", "CUSTOMER_NOT_FOUND", "alpha customer 7 not found", "engine_request", 0, 1),
    Seed("req-b", "INVALID_TOKEN", "bravo token rejected", "proxy_request", 5, 5),
    Seed(None, "MALFORMED_JSON", "charlie body is not JSON", "proxy_request", 10, 10),
    Seed("req-c", "CUSTOMER_NOT_FOUND", "delta customer 9 not found", "engine_request", 10, 12),
    Seed("req-c", "LIST_INACTIVE", "echo list 50% full_ish is inactive", "engine_processing", 10, 13),
    Seed("req-d", "QUEUE_UNAVAILABLE", "foxtrot queue refused the job", "proxy_forwarding", 20, 20),
    Seed(None, "INVALID_TOKEN", "bravo token rejected", "proxy_request", 30, 30),
    Seed("req-e", "PROCESSING_FAILED", "golf Mapping FAILED on model item", "engine_processing", 40, 45),
    Seed("req-f", "CUSTOMER_NOT_FOUND", "hotel customer 11 not found", "engine_request", 50, 45),
    Seed("req-g", "LIST_INACTIVE", "india list 5 percent is inactive", "engine_processing", 60, 61),
    Seed("req-h", "UNKNOWN_TENANT", "juliet 500 unknown", "proxy_request", 70, 70),
    Seed("req-a", "MISSING_IDENTIFIER", "kilo identifier missing", "engine_request", 80, 90),
]


@dataclass(frozen=True)
class Stored:
    id: int
    seed: Seed

    @property
    def created_at(self) -> datetime:
        return BASE_AT + timedelta(minutes=self.seed.created_minutes)

    @property
    def logged_at(self) -> datetime:
        return BASE_AT + timedelta(minutes=self.seed.logged_minutes)

    def sort_value(self, field: str) -> Any:
        if field == "id":
            return self.id
        if field == "request_id":
            return self.seed.request_id or ""  # NULL sorts as the empty string
        if field in ("created_at", "logged_at"):
            return getattr(self, field)
        return getattr(self.seed, field)


async def insert_entries(sessionmaker, tenant_id: str, seeds: list[Seed]) -> list[Stored]:
    async with sessionmaker() as session:
        rows = [
            IncomingError(
                tenant_id=tenant_id,
                request_id=seed.request_id,
                error_code=seed.error_code,
                message=seed.message,
                source=seed.source,
                created_at=BASE_AT + timedelta(minutes=seed.created_minutes),
                logged_at=BASE_AT + timedelta(minutes=seed.logged_minutes),
                payload=seed.payload,
            )
            for seed in seeds
        ]
        session.add_all(rows)
        await session.commit()
        return [Stored(row.id, seed) for row, seed in zip(rows, seeds, strict=True)]


def expected_order(entries: list[Stored], sort: str) -> list[int]:
    field = sort.removeprefix("-")
    ordered = sorted(entries, key=lambda entry: (entry.sort_value(field), entry.id), reverse=sort.startswith("-"))
    return [entry.id for entry in ordered]


async def fetch_all_pages(client, headers, tenant_id: str, params: dict[str, Any], between_pages=None) -> list[int]:
    ids: list[int] = []
    cursor = None
    for _ in range(100):
        response = await client.get(
            f"/api/v1/tenants/{tenant_id}/incoming-errors",
            params={**params, **({"cursor": cursor} if cursor else {})},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= int(params.get("limit", 50))
        ids.extend(item["id"] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return ids
        if between_pages is not None:
            await between_pages()
    raise AssertionError("pagination did not end")


@pytest.fixture
async def tenant(sessionmaker):
    return await make_tenant(sessionmaker)


@pytest.fixture
async def entries(sessionmaker, tenant) -> list[Stored]:
    return await insert_entries(sessionmaker, tenant.id, SEEDS)


def url(tenant_id: str, suffix: str = "") -> str:
    return f"/api/v1/tenants/{tenant_id}/incoming-errors{suffix}"


class TestAuthentication:
    @pytest.mark.parametrize("suffix", ["", "/1", "/1/payload"])
    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic x"}])
    async def test_every_route_needs_the_admin_key(self, client, tenant, suffix, headers) -> None:
        response = await client.get(url(tenant.id, suffix), headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"


class TestList:
    async def test_default_is_newest_logged_first_without_payloads(
        self, client, admin_headers, tenant, entries
    ) -> None:
        tenant_id = tenant.id
        response = await client.get(url(tenant_id), headers=admin_headers)
        assert response.status_code == 200
        body = response.json()
        assert [item["id"] for item in body["items"]] == expected_order(entries, "-logged_at")
        assert body["next_cursor"] is None
        assert all(set(item) == ITEM_FIELDS for item in body["items"])
        first = next(item for item in body["items"] if item["id"] == entries[0].id)
        assert first["request_id"] == "req-a"
        assert first["error_code"] == "CUSTOMER_NOT_FOUND"
        assert first["source"] == "engine_request"
        assert datetime.fromisoformat(first["created_at"]) == BASE_AT
        assert datetime.fromisoformat(first["logged_at"]) == BASE_AT + timedelta(minutes=1)

    async def test_unknown_tenant_is_404(self, client, admin_headers) -> None:
        response = await client.get(url("t-no-such-tenant"), headers=admin_headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"

    async def test_an_empty_log_is_an_empty_page(self, client, admin_headers, tenant) -> None:
        response = await client.get(url(tenant.id), headers=admin_headers)
        assert response.json() == {"items": [], "next_cursor": None}


def _at(minutes: int) -> datetime:
    return BASE_AT + timedelta(minutes=minutes)


FILTER_CASES = [
    pytest.param({"source": "proxy_request"}, lambda s: s.source == "proxy_request", id="source"),
    pytest.param({"error_code": "LIST_INACTIVE"}, lambda s: s.error_code == "LIST_INACTIVE", id="error_code"),
    pytest.param(
        {"error_code": "customer_not_found"}, lambda s: s.error_code == "CUSTOMER_NOT_FOUND", id="error_code-any-case"
    ),
    pytest.param({"request_id": "req-c"}, lambda s: s.request_id == "req-c", id="request_id"),
    pytest.param({"message": "NOT FOUND"}, lambda s: "not found" in s.message.lower(), id="message-case-insensitive"),
    pytest.param({"message": "mapping failed"}, lambda s: "mapping failed" in s.message.lower(), id="message-mixed"),
    pytest.param({"message": "50%"}, lambda s: "50%" in s.message, id="message-percent-is-literal"),
    pytest.param({"message": "l_i"}, lambda s: "l_i" in s.message, id="message-underscore-is-literal"),
    pytest.param({"message": "5%"}, lambda s: "5%" in s.message, id="message-percent-not-wildcard"),
    pytest.param(
        {"created_from": "2025-03-01T12:10:00Z"}, lambda s: _at(s.created_minutes) >= _at(10), id="created_from"
    ),
    pytest.param(
        {"created_to": "2025-03-01T12:10:00+00:00"}, lambda s: _at(s.created_minutes) <= _at(10), id="created_to"
    ),
    pytest.param(
        {"created_from": "2025-03-01T13:10:00+01:00", "created_to": "2025-03-01T12:40:00"},
        lambda s: _at(10) <= _at(s.created_minutes) <= _at(40),
        id="created-range-offset-and-naive-utc",
    ),
    pytest.param({"logged_from": "2025-03-01T12:45:00Z"}, lambda s: _at(s.logged_minutes) >= _at(45), id="logged_from"),
    pytest.param({"logged_to": "2025-03-01 12:12"}, lambda s: _at(s.logged_minutes) <= _at(12), id="logged_to-naive"),
    pytest.param(
        {"logged_from": "2025-03-01T12:12:00Z", "logged_to": "2025-03-01T12:45:00Z"},
        lambda s: _at(12) <= _at(s.logged_minutes) <= _at(45),
        id="logged-range",
    ),
    pytest.param(
        {"source": "engine_request", "message": "customer", "logged_to": "2025-03-01T12:30:00Z"},
        lambda s: s.source == "engine_request" and "customer" in s.message and s.logged_minutes <= 30,
        id="combined",
    ),
    pytest.param({"request_id": "req-zzz"}, lambda s: False, id="no-match"),
]


class TestFilters:
    @pytest.mark.parametrize(("params", "matches"), FILTER_CASES)
    async def test_filter(self, client, admin_headers, tenant, entries, params, matches) -> None:
        tenant_id = tenant.id
        response = await client.get(url(tenant_id), params=params, headers=admin_headers)
        assert response.status_code == 200, response.text
        expected = [entry for entry in entries if matches(entry.seed)]
        assert [item["id"] for item in response.json()["items"]] == expected_order(expected, "-logged_at")

    async def test_an_unencoded_plus_offset_still_parses(self, client, admin_headers, tenant, entries) -> None:
        tenant_id = tenant.id
        # "+01:00" typed raw into a query string arrives as " 01:00".
        response = await client.get(url(tenant_id) + "?logged_from=2025-03-01T13:45:00+01:00", headers=admin_headers)
        assert response.status_code == 200, response.text
        expected = [entry for entry in entries if entry.seed.logged_minutes >= 45]
        assert [item["id"] for item in response.json()["items"]] == expected_order(expected, "-logged_at")

    @pytest.mark.parametrize(
        "params",
        [
            {"created_from": "yesterday"},
            {"logged_to": "2025-13-01T00:00:00Z"},
            {"created_to": "1700000000"},
            {"created_from": "2025-03-02T00:00:00Z", "created_to": "2025-03-01T00:00:00Z"},
            {"source": "somewhere"},
            {"sort": "payload"},
            {"sort": "--logged_at"},
            {"sort": "+id"},
            {"message": ""},
            {"limit": "0"},
            {"limit": "501"},
            {"cursor": "not-a-cursor!"},
        ],
    )
    async def test_invalid_query_is_422(self, client, admin_headers, tenant, params) -> None:
        response = await client.get(url(tenant.id), params=params, headers=admin_headers)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "VALIDATION_FAILED"


class TestSortAndPages:
    @pytest.mark.parametrize("sort", [*SORT_FIELDS, *(f"-{field}" for field in SORT_FIELDS)])
    async def test_every_sort_pages_through_in_order(self, client, admin_headers, tenant, entries, sort) -> None:
        tenant_id = tenant.id
        ids = await fetch_all_pages(client, admin_headers, tenant_id, {"sort": sort, "limit": 5})
        assert ids == expected_order(entries, sort)

    async def test_limit_splits_pages_and_the_last_has_no_cursor(self, client, admin_headers, tenant, entries) -> None:
        tenant_id = tenant.id
        first = (await client.get(url(tenant_id), params={"limit": 10}, headers=admin_headers)).json()
        assert len(first["items"]) == 10 and first["next_cursor"]
        second = (
            await client.get(
                url(tenant_id), params={"limit": 10, "cursor": first["next_cursor"]}, headers=admin_headers
            )
        ).json()
        assert len(second["items"]) == 2 and second["next_cursor"] is None
        exact = (await client.get(url(tenant_id), params={"limit": 12}, headers=admin_headers)).json()
        assert len(exact["items"]) == 12 and exact["next_cursor"] is None

    @pytest.mark.parametrize("sort", ["-logged_at", "logged_at", "error_code", "-request_id", "message"])
    async def test_entries_arriving_while_paging_cause_no_gap_or_duplicate(
        self, client, admin_headers, sessionmaker, tenant, entries, sort
    ) -> None:
        tenant_id = tenant.id
        arrivals = iter(range(100))

        async def new_entries_arrive() -> None:
            n = next(arrivals)
            # One entry logged now (the newest) and one landing in the middle of every sort order.
            async with sessionmaker() as session:
                await record_incoming_error(
                    session,
                    tenant_id=tenant_id,
                    source=ErrorSource.ENGINE_REQUEST,
                    error_code=ErrorCode.CUSTOMER_NOT_FOUND,
                    message=f"delta arrival {n}",
                    created_at=datetime.now(UTC),
                    request_id=f"req-c{n}",
                )
                await session.commit()
            await insert_entries(
                sessionmaker,
                tenant_id,
                [Seed(f"req-d{n}", "INVALID_TOKEN", f"echo arrival {n}", "proxy_request", 35, 35)],
            )

        ids = await fetch_all_pages(client, admin_headers, tenant_id, {"sort": sort, "limit": 3}, new_entries_arrive)
        assert len(ids) == len(set(ids)), "an entry was served twice"
        pre_existing = expected_order(entries, sort)
        assert [entry_id for entry_id in ids if entry_id in set(pre_existing)] == pre_existing

    async def test_a_cursor_only_continues_its_own_sort(self, client, admin_headers, tenant, entries) -> None:
        tenant_id = tenant.id
        page = (await client.get(url(tenant_id), params={"sort": "message", "limit": 2}, headers=admin_headers)).json()
        response = await client.get(
            url(tenant_id), params={"sort": "-message", "cursor": page["next_cursor"]}, headers=admin_headers
        )
        assert response.status_code == 422
        assert "sort=message" in response.json()["error"]["message"]
        default_sort = await client.get(url(tenant_id), params={"cursor": page["next_cursor"]}, headers=admin_headers)
        assert default_sort.status_code == 422

    async def test_a_cursor_also_applies_the_filters_given_with_it(
        self, client, admin_headers, tenant, entries
    ) -> None:
        tenant_id = tenant.id
        params = {"source": "engine_request", "sort": "created_at", "limit": 2}
        ids = await fetch_all_pages(client, admin_headers, tenant_id, params)
        expected = [entry for entry in entries if entry.seed.source == "engine_request"]
        assert ids == expected_order(expected, "created_at")

    # A narrow time window or message filter is applied before sorting (the repository counts its
    # matches first); a cap of 0 forces the other query shape. Both must page identically.
    @pytest.mark.parametrize("narrow_cap", [0, None], ids=["sort-index-first", "filter-first"])
    @pytest.mark.parametrize(
        ("params", "matches"),
        [
            (
                {"created_from": "2025-03-01T12:05:00Z", "created_to": "2025-03-01T12:50:00Z"},
                lambda s: 5 <= s.created_minutes <= 50,
            ),
            ({"logged_from": "2025-03-01T12:10:00Z"}, lambda s: s.logged_minutes >= 10),
            ({"message": "CUSTOMER"}, lambda s: "customer" in s.message),
        ],
        ids=["created-window", "logged-window", "message"],
    )
    async def test_filtered_pages_are_the_same_whichever_way_they_are_read(
        self, client, admin_headers, tenant, entries, monkeypatch, narrow_cap, params, matches
    ) -> None:
        if narrow_cap is not None:
            monkeypatch.setattr(incoming_errors_repository, "NARROW_WINDOW_ROWS", narrow_cap)
            monkeypatch.setattr(incoming_errors_repository, "NARROW_MESSAGE_MATCHES", narrow_cap)
        expected = [entry for entry in entries if matches(entry.seed)]
        for sort in ("-logged_at", "logged_at", "error_code", "-message", "-id", "created_at"):
            ids = await fetch_all_pages(client, admin_headers, tenant.id, {**params, "sort": sort, "limit": 2})
            assert ids == expected_order(expected, sort), sort


class TestEntry:
    async def test_entry_with_payload(self, client, admin_headers, sessionmaker, tenant) -> None:
        payload = {"type": "event_processing_request", "id": "req-1", "events": [{"name": "x", "n": 1}]}
        (stored,) = await insert_entries(
            sessionmaker, tenant.id, [Seed("req-1", "PROCESSING_FAILED", "boom", "engine_processing", 0, 0, payload)]
        )
        response = await client.get(url(tenant.id, f"/{stored.id}"), headers=admin_headers)
        assert response.status_code == 200
        body = response.json()
        assert body["payload"] == payload
        assert {key: body[key] for key in ("id", "request_id", "error_code", "message", "source")} == {
            "id": stored.id,
            "request_id": "req-1",
            "error_code": "PROCESSING_FAILED",
            "message": "boom",
            "source": "engine_processing",
        }

    async def test_entry_without_payload_shows_null(self, client, admin_headers, tenant, entries) -> None:
        tenant_id = tenant.id
        response = await client.get(url(tenant_id, f"/{entries[0].id}"), headers=admin_headers)
        assert response.status_code == 200
        assert response.json()["payload"] is None

    @pytest.mark.parametrize("entry_id", ["999999999999", "abc", "1.5", "-1", "99999999999999999999999"])
    async def test_unknown_or_malformed_id_is_404(self, client, admin_headers, tenant, entry_id) -> None:
        for suffix in (f"/{entry_id}", f"/{entry_id}/payload"):
            response = await client.get(url(tenant.id, suffix), headers=admin_headers)
            assert response.status_code == 404, (suffix, response.text)
            assert response.json()["error"]["code"] == "NOT_FOUND"


NESTED_PAYLOAD = {
    "type": "event_processing_request",
    "id": "5f0c",
    "account": {"account_id": 42, "account_settings": {"loyaltyEnvironment": "t"}},
    "events": [{"type": "custom_event", "name": "Kávé ☕", "attributes": {"z": 1, "a": [True, None, 2.5]}}],
    "empty": {},
}
NESTED_PAYLOAD_TEXT = """{
  "type": "event_processing_request",
  "id": "5f0c",
  "account": {
    "account_id": 42,
    "account_settings": {
      "loyaltyEnvironment": "t"
    }
  },
  "events": [
    {
      "type": "custom_event",
      "name": "Kávé ☕",
      "attributes": {
        "z": 1,
        "a": [
          true,
          null,
          2.5
        ]
      }
    }
  ],
  "empty": {}
}
"""


class TestPayloadDownload:
    @pytest.mark.parametrize(
        ("query", "content_type", "extension"),
        [
            ("", "application/json", "json"),
            ("?format=json", "application/json", "json"),
            ("?format=txt", "text/plain; charset=utf-8", "txt"),
        ],
    )
    async def test_download_is_indented_json_in_stored_key_order(
        self, client, admin_headers, sessionmaker, tenant, query, content_type, extension
    ) -> None:
        (stored,) = await insert_entries(
            sessionmaker,
            tenant.id,
            [Seed("5f0c", "PROCESSING_FAILED", "boom", "engine_processing", 0, 0, NESTED_PAYLOAD)],
        )
        response = await client.get(url(tenant.id, f"/{stored.id}/payload{query}"), headers=admin_headers)
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
        assert response.headers["content-disposition"] == (
            f'attachment; filename="incoming-error-{stored.id}.{extension}"'
        )
        assert response.content.decode("utf-8") == NESTED_PAYLOAD_TEXT

    async def test_no_payload_is_404(self, client, admin_headers, tenant, entries) -> None:
        tenant_id = tenant.id
        for query in ("", "?format=txt"):
            response = await client.get(url(tenant_id, f"/{entries[0].id}/payload{query}"), headers=admin_headers)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "NOT_FOUND"

    async def test_other_format_is_422(self, client, admin_headers, sessionmaker, tenant) -> None:
        (stored,) = await insert_entries(
            sessionmaker, tenant.id, [Seed(None, "INVALID_MESSAGE", "bad", "proxy_request", 0, 0, {"a": 1})]
        )
        response = await client.get(url(tenant.id, f"/{stored.id}/payload?format=xml"), headers=admin_headers)
        assert response.status_code == 422

    async def test_stored_payload_never_holds_the_authentication_token(
        self, client, admin_headers, sessionmaker, tenant
    ) -> None:
        secret = tenant.inbound_token
        request = {
            "type": "event_processing_request",
            "id": "c0ffee",
            "account": {
                "account_id": 7,
                "account_settings": {"loyaltyEnvironment": tenant.id, "authenticationToken": secret},
            },
            "events": [{"type": "custom_event", "name": "purchase"}],
        }
        async with sessionmaker() as session:
            await record_incoming_error(
                session,
                tenant_id=tenant.id,
                source=ErrorSource.ENGINE_REQUEST,
                error_code=ErrorCode.CUSTOMER_NOT_FOUND,
                message="customer C-1 not found",
                created_at=datetime.now(UTC),
                request_id="c0ffee",
                payload=request,
            )
            await session.commit()
        listed = (await client.get(url(tenant.id), headers=admin_headers)).json()["items"]
        assert [item["request_id"] for item in listed] == ["c0ffee"]
        entry = await client.get(url(tenant.id, f"/{listed[0]['id']}"), headers=admin_headers)
        download = await client.get(url(tenant.id, f"/{listed[0]['id']}/payload?format=txt"), headers=admin_headers)
        for response in (entry, download):
            assert response.status_code == 200
            assert secret not in response.text
        settings = entry.json()["payload"]["account"]["account_settings"]
        assert settings == {"loyaltyEnvironment": tenant.id, "authenticationToken": "[REDACTED]"}
        # The rest of the request is kept as received, in its order.
        assert list(json.loads(download.text)) == ["type", "id", "account", "events"]
        assert request["account"]["account_settings"]["authenticationToken"] == secret  # caller's copy untouched


class TestTenantIsolation:
    async def test_one_tenant_never_sees_another_tenants_entries(
        self, client, admin_headers, sessionmaker, tenant, entries
    ) -> None:
        tenant_id = tenant.id
        other = await make_tenant(sessionmaker)
        (foreign,) = await insert_entries(
            sessionmaker,
            other.id,
            [Seed("req-a", "CUSTOMER_NOT_FOUND", "alpha foreign", "engine_request", 1, 1, {"x": 1})],
        )
        mine = await fetch_all_pages(client, admin_headers, tenant_id, {"limit": 5})
        assert sorted(mine) == sorted(entry.id for entry in entries)
        by_request = (await client.get(url(tenant_id), params={"request_id": "req-a"}, headers=admin_headers)).json()
        assert foreign.id not in [item["id"] for item in by_request["items"]]
        theirs = (await client.get(url(other.id), headers=admin_headers)).json()
        assert [item["id"] for item in theirs["items"]] == [foreign.id]
        for suffix in (f"/{foreign.id}", f"/{foreign.id}/payload"):
            response = await client.get(url(tenant_id, suffix), headers=admin_headers)
            assert response.status_code == 404
        mine_by_id = await client.get(url(other.id, f"/{entries[0].id}"), headers=admin_headers)
        assert mine_by_id.status_code == 404
