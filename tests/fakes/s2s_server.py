"""A fake mParticle S2S server: a real HTTP server (Starlette on uvicorn, in a background thread)
on 127.0.0.1 and a free port.

It behaves like S2S where our client can tell (reference/notes/s2s.md): Basic auth (no header 401,
unknown key or wrong secret 403), 413 from 256 KB, 400 with `{"errors":[…]}` for a batch the
official JSON schema rejects (with the schema's known gaps patched in memory), 202 otherwise. It
records every request and every accepted batch, and can be told to answer an error status (with
`Retry-After`) or to hang, for the next N requests or for one api_key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry, Resource
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "data" / "s2s"
MAX_REQUEST_BYTES = 256 * 1024
MAX_BULK_BATCHES = 100
MAX_REPORTED_ERRORS = 10

# Identities S2S accepts that the official schema lacks, plus the SDKs' alias spellings.
EXTRA_IDENTITIES = (
    ["mobile_number", "phone_number_2", "phone_number_3", "customerid"]
    + [f"other_id_{n}" for n in range(5, 11)]
    + [f"other{n}" for n in range(2, 11)]
)


def _patched_single_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / "mparticle.inbound.eventsapi.schema.json").read_text())
    schema = copy.deepcopy(schema)
    identities = schema["properties"]["user_identities"]["properties"]
    for name in EXTRA_IDENTITIES:
        identities[name] = {"$ref": "#/definitions/String"}
    custom_event_data = schema["definitions"]["CustomEvent"]["properties"]["data"]["allOf"][1]
    custom_event_data["properties"]["custom_event_type"]["enum"].append("attribution")
    return schema


def build_validators() -> tuple[Draft7Validator, Draft7Validator]:
    """(single batch, bulk array) validators; the bulk schema's absolute $ref resolves locally."""
    single = _patched_single_schema()
    bulk: dict[str, Any] = json.loads((SCHEMA_DIR / "mparticle.inbound.eventsapi.bulk.schema.json").read_text())
    registry: Registry = Registry().with_resources(
        [(single["$id"], Resource.from_contents(single)), (bulk["$id"], Resource.from_contents(bulk))]
    )
    checker = FormatChecker()
    return (
        Draft7Validator(single, registry=registry, format_checker=checker),
        Draft7Validator(bulk, registry=registry, format_checker=checker),
    )


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    api_key: str | None
    status: int
    body: bytes


@dataclass(frozen=True)
class AcceptedBatch:
    path: str
    api_key: str
    batch: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Fault:
    """Answer `status` (None: hang up to `hang_seconds` or until the client gives up)."""

    status: int | None
    retry_after: str | None = None
    hang_seconds: float = 30.0
    api_key: str | None = None
    customer_id: str | None = None  # only requests carrying a batch with this user_identities.customer_id
    remaining: int | None = 1  # None: until cleared


@dataclass
class _State:
    accounts: dict[str, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    accepted: list[AcceptedBatch] = field(default_factory=list)
    log: list[tuple[str, str | None]] = field(default_factory=list)


def _customer_ids(body: bytes) -> set[str]:
    try:
        payload = json.loads(body)
    except ValueError:
        return set()
    batches = payload if isinstance(payload, list) else [payload]
    return {
        str(batch["user_identities"].get("customer_id"))
        for batch in batches
        if isinstance(batch, dict) and isinstance(batch.get("user_identities"), dict)
    }


def _errors(status: int, messages: list[str]) -> JSONResponse:
    return JSONResponse({"errors": [{"code": "BAD_REQUEST", "message": m} for m in messages]}, status_code=status)


class FakeS2SServer:
    """Start with `start()`; point a tenant's api_url at `url`; register its key with `add_account`."""

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._state = _State()
        self._single, self._bulk = build_validators()
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        """Serve on the port (a free one the first time; the same one after stop())."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        self._port = sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route("/v2/events", self._handle, methods=["POST"]),
                Route("/v2/bulkevents", self._handle, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(
            app, lifespan="off", log_level="warning", http="h11", ws="none", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake S2S server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving; connections to the port are refused until start()."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    # --- test controls ----------------------------------------------------------------------------

    def add_account(self, api_key: str, api_secret: str) -> None:
        with self._lock:
            self._state.accounts[api_key] = api_secret

    def fail(
        self,
        status: int,
        *,
        times: int | None = 1,
        retry_after: str | None = None,
        api_key: str | None = None,
        customer_id: str | None = None,
    ) -> None:
        """Answer `status` to the next `times` requests (None: until cleared), of `api_key` or anyone,
        and only to requests carrying a batch of `customer_id` when given."""
        with self._lock:
            self._state.faults.append(
                Fault(status, retry_after=retry_after, api_key=api_key, customer_id=customer_id, remaining=times)
            )

    def hang(self, *, times: int | None = 1, seconds: float = 30.0, api_key: str | None = None) -> None:
        """Answer nothing to the next `times` requests until the client gives up (or `seconds` pass)."""
        with self._lock:
            self._state.faults.append(Fault(None, hang_seconds=seconds, api_key=api_key, remaining=times))

    def clear_faults(self, api_key: str | None = None) -> None:
        with self._lock:
            self._state.faults = [f for f in self._state.faults if api_key is not None and f.api_key != api_key]

    def accepted(self, api_key: str | None = None) -> list[AcceptedBatch]:
        with self._lock:
            return [a for a in self._state.accepted if api_key is None or a.api_key == api_key]

    def requests(self, api_key: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._state.requests if api_key is None or r.api_key == api_key]

    def log(self) -> list[tuple[str, str | None]]:
        """("request" | "accepted" | "hang-start" | "hang-end", api_key) in the order they happened."""
        with self._lock:
            return list(self._state.log)

    # --- the S2S behaviour ------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> tuple[int | None, str | None]:
        header = request.headers.get("authorization")
        if not header:
            return 401, None
        scheme, _, encoded = header.partition(" ")
        try:
            key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return 403, None
        with self._lock:
            expected = self._state.accounts.get(key)
        if scheme.lower() != "basic" or expected is None or expected != secret:
            return 403, key
        return None, key

    def _take_fault(self, api_key: str | None, body: bytes) -> Fault | None:
        with self._lock:
            for fault in self._state.faults:
                if fault.api_key not in (None, api_key) or fault.remaining == 0:
                    continue
                if fault.customer_id is not None and fault.customer_id not in _customer_ids(body):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def _record(self, path: str, api_key: str | None, status: int, body: bytes) -> None:
        with self._lock:
            self._state.requests.append(RecordedRequest(path, api_key, status, body))
            self._state.log.append(("request", api_key))

    def _validate(self, path: str, payload: Any) -> list[str]:
        if path == "/v2/events":
            if not isinstance(payload, dict):
                return ["the body must be a JSON object (one batch)"]
            errors = list(self._single.iter_errors(payload))
        else:
            if not isinstance(payload, list) or not payload:
                return ["the body must be a non-empty JSON array of batches"]
            if len(payload) > MAX_BULK_BATCHES:
                return [f"at most {MAX_BULK_BATCHES} batches per request"]
            errors = list(self._bulk.iter_errors(payload))
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '$'}: {e.message}" for e in errors]

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        if len(body) >= MAX_REQUEST_BYTES:
            self._record(path, None, 413, body)
            return _errors(413, [f"the request must be under {MAX_REQUEST_BYTES} bytes"])
        status, api_key = self._authenticate(request)
        if status is not None:
            self._record(path, api_key, status, body)
            return Response(status_code=status)
        fault = self._take_fault(api_key, body)
        if fault is not None and fault.status is None:
            return await self._hang(request, path, api_key, body, fault.hang_seconds)
        if fault is not None and fault.status is not None:
            self._record(path, api_key, fault.status, body)
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            if fault.status == 429:
                headers["X-mp-rate-limit-exceeded"] = "account"
            return (
                _errors(fault.status, [f"injected {fault.status}"])
                if fault.status == 400
                else Response(status_code=fault.status, headers=headers)
            )
        try:
            payload = json.loads(body)
        except ValueError:
            self._record(path, api_key, 400, body)
            return _errors(400, ["the body is not JSON"])
        problems = self._validate(path, payload)
        if problems:
            self._record(path, api_key, 400, body)
            return _errors(400, problems[:MAX_REPORTED_ERRORS])
        batches = [payload] if isinstance(payload, dict) else payload
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert api_key is not None
        with self._lock:
            self._state.requests.append(RecordedRequest(path, api_key, 202, body))
            self._state.log.append(("request", api_key))
            for batch in batches:
                self._state.accepted.append(AcceptedBatch(path, api_key, batch, headers))
                self._state.log.append(("accepted", api_key))
        return Response(status_code=202, headers={"X-mp-rate-limit-percentage-used": "1"})

    async def _hang(self, request: Request, path: str, api_key: str | None, body: bytes, seconds: float) -> Response:
        with self._lock:
            self._state.log.append(("hang-start", api_key))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not await request.is_disconnected():
            await asyncio.sleep(0.02)
        with self._lock:
            self._state.log.append(("hang-end", api_key))
        self._record(path, api_key, 503, body)
        return Response(status_code=503)
