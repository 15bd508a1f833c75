"""The fault suite's rig: a private PostgreSQL and a private Redis the scenario may stop, real
`loyalty-bridge proxy` and `worker` processes it may SIGKILL, the fake S2S server, and two load
generators (Firehose and outbound) running while the faults happen.

Load: FIREHOSE_CUSTOMERS and OUTBOUND_CUSTOMERS senders, each sending its own customer's calls one
after the other (so each customer's acknowledged calls have a known order), every SEND_INTERVAL_SECONDS.
A call that is not acknowledged is sent again like its client would (Firehose: the same request id;
outbound: the same call) until RETRY_WINDOW_SECONDS have passed, then counted as refused.

Afterwards `settle_and_verify` waits until every acknowledged call has had its effect and counts:
acknowledged, lost (acknowledged but never applied / delivered), doubled (ledger entries of one
Firehose event beyond the first; S2S events received more than once, by source_message_id), and
the seconds from the end of the load (a few seconds after the last fault) until everything settled.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from shared.settings import Settings
from tests.e2e.conftest import ChildProcess, process_env
from tests.e2e.outbound.helpers import S2STenant
from tests.fakes.s2s_server import FakeS2SServer
from tests.inbound_helpers import FIREHOSE_PATH, custom_event, event_request
from tests.private_redis import free_port

FIREHOSE_CUSTOMERS = 12
OUTBOUND_CUSTOMERS = 12
SEND_INTERVAL_SECONDS = 0.4
RETRY_WINDOW_SECONDS = 30.0
RETRY_PAUSE_SECONDS = 0.5
REQUEST_TIMEOUT_SECONDS = 10.0
STARTUP_TIMEOUT_SECONDS = 30.0
SETTLE_TIMEOUT_SECONDS = 60.0
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Acked:
    """Calls acknowledged by the proxy, in acknowledgement order per customer."""

    firehose: dict[str, list[str]] = field(default_factory=dict)  # customer -> request ids
    outbound: dict[str, list[str]] = field(default_factory=dict)  # customer -> message ids
    refused_firehose: int = 0
    refused_outbound: int = 0
    statuses: Counter[str] = field(default_factory=Counter)

    def firehose_ids(self) -> list[str]:
        return [request_id for ids in self.firehose.values() for request_id in ids]

    def outbound_ids(self) -> list[str]:
        return [message_id for ids in self.outbound.values() for message_id in ids]


@dataclass
class Figures:
    scenario: str
    firehose_acked: int
    firehose_lost: int
    firehose_doubled: int
    firehose_refused: int
    # Lost requests the worker marked applied (processed_request) without a ledger entry: tells
    # "never applied" from "applied to no effect" (e.g. the tenant's mapping not loaded).
    firehose_lost_but_processed: int
    outbound_acked: int
    outbound_lost: int
    outbound_doubled_at_s2s: int
    outbound_refused: int
    settle_seconds: float
    firehose_settle_seconds: float
    outbound_settle_seconds: float
    statuses: dict[str, int]

    def line(self) -> str:
        return (
            f"{self.scenario}: firehose acked={self.firehose_acked} lost={self.firehose_lost} "
            f"doubled={self.firehose_doubled} refused={self.firehose_refused} "
            f"lost_but_processed={self.firehose_lost_but_processed}; outbound acked={self.outbound_acked} "
            f"lost={self.outbound_lost} doubled_at_s2s={self.outbound_doubled_at_s2s} "
            f"refused={self.outbound_refused}; settled in {self.settle_seconds:.1f}s (firehose "
            f"{self.firehose_settle_seconds:.1f}s, outbound {self.outbound_settle_seconds:.1f}s); "
            f"answers {self.statuses}"
        )

    def save(self) -> None:
        RESULTS_DIR.mkdir(exist_ok=True)
        (RESULTS_DIR / f"{self.scenario}.json").write_text(json.dumps(self.__dict__, indent=2) + "\n")


class Rig:
    """Processes and load of one scenario (see the module docstring)."""

    def __init__(
        self, settings: Settings, tenant: S2STenant, fake_s2s: FakeS2SServer, database_url: str, logs: Path
    ) -> None:
        self.settings = settings
        self.tenant = tenant
        self.fake_s2s = fake_s2s
        self.database_url = database_url  # plain libpq form, for asyncpg
        self.logs = logs
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.children: list[ChildProcess] = []
        self.proxy: ChildProcess | None = None
        self.worker: ChildProcess | None = None
        self.acked = Acked()
        self._stop_load = asyncio.Event()
        self._load: list[asyncio.Task[None]] = []

    def _spawn(self, command: str, **env: str) -> ChildProcess:
        environment = process_env(
            self.settings,
            OUTBOUND_RETRY_BASE_SECONDS="0.2",
            OUTBOUND_MAX_RESENDS="100",
            OUTBOUND_TIMEOUT_SECONDS="3",
            **env,
        )
        child = ChildProcess(command, environment, self.logs / f"{command}-{len(self.children)}.log").start()
        self.children.append(child)
        return child

    async def start_proxy(self) -> None:
        self.proxy = self._spawn("proxy", HOST="127.0.0.1", PORT=str(self.port))
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or self.proxy.process is None or self.proxy.process.poll() is not None:
                    raise AssertionError(f"the proxy did not start:\n{self.proxy.output()}")
                await asyncio.sleep(0.1)

    def start_worker(self) -> None:
        self.worker = self._spawn("worker")

    def kill(self, child: ChildProcess | None) -> None:
        assert child is not None
        child.kill()  # SIGKILL

    def stop_all(self) -> None:
        for child in self.children:
            child.kill()

    def outputs(self) -> str:
        return "\n".join(f"--- {child.log_path}\n{child.output()}" for child in self.children)

    # --- load ---------------------------------------------------------------------------------

    def start_load(self) -> None:
        client = httpx.AsyncClient(base_url=self.base_url, timeout=REQUEST_TIMEOUT_SECONDS)
        self._client = client
        self._load = [
            *(asyncio.create_task(self._firehose_sender(f"F-{n}")) for n in range(FIREHOSE_CUSTOMERS)),
            *(asyncio.create_task(self._outbound_sender(f"O-{n}")) for n in range(OUTBOUND_CUSTOMERS)),
        ]

    async def stop_load(self) -> None:
        self._stop_load.set()
        await asyncio.gather(*self._load)
        await self._client.aclose()

    async def _send_until_acked(self, send: Any, ok_status: int) -> httpx.Response | None:
        deadline = time.monotonic() + RETRY_WINDOW_SECONDS
        while True:
            try:
                response: httpx.Response = await send()
                self.acked.statuses[str(response.status_code)] += 1
                if response.status_code == ok_status:
                    return response
            except httpx.TransportError as error:
                self.acked.statuses[type(error).__name__] += 1
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(RETRY_PAUSE_SECONDS)

    async def _firehose_sender(self, customer: str) -> None:
        acked = self.acked.firehose.setdefault(customer, [])
        number = 0
        while not self._stop_load.is_set():
            number += 1
            payload = event_request(self.tenant.tenant, custom_event("tick", {"n": number}), customer=customer)
            body = json.dumps(payload)

            async def send(body: str = body) -> httpx.Response:
                return await self._client.post(
                    FIREHOSE_PATH, content=body, headers={"Content-Type": "application/json"}
                )

            if await self._send_until_acked(send, 200) is not None:
                acked.append(payload["id"])
            else:
                self.acked.refused_firehose += 1
            await asyncio.sleep(SEND_INTERVAL_SECONDS)

    async def _outbound_sender(self, customer: str) -> None:
        acked = self.acked.outbound.setdefault(customer, [])
        number = 0
        while not self._stop_load.is_set():
            number += 1
            body = {"customer": {"id": customer}, "event_name": "nudge", "event_type": "other", "data": {"n": number}}

            async def send(body: dict[str, Any] = body) -> httpx.Response:
                return await self._client.post(
                    self.tenant.url("marketing-communications"), json=body, headers=self.tenant.engine_headers
                )

            response = await self._send_until_acked(send, 202)
            if response is not None:
                acked.append(response.json()["message_id"])
            else:
                self.acked.refused_outbound += 1
            await asyncio.sleep(SEND_INTERVAL_SECONDS)

    # --- verification ---------------------------------------------------------------------------

    async def settle_and_verify(self, scenario: str) -> Figures:
        """Wait (bounded) until everything acknowledged took effect, then count and check."""
        load_over_at = time.monotonic()
        connection = await asyncpg.connect(self.database_url)
        try:
            firehose_ids = set(self.acked.firehose_ids())
            outbound_ids = self.acked.outbound_ids()
            deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
            firehose_settled_at = outbound_settled_at = None
            while time.monotonic() < deadline and (firehose_settled_at is None or outbound_settled_at is None):
                if firehose_settled_at is None and firehose_ids <= await self._applied_request_ids(connection):
                    firehose_settled_at = time.monotonic()
                if (
                    outbound_settled_at is None
                    and set(outbound_ids) <= await self._delivered_message_ids(connection)
                    and self._all_reached_s2s(await self._source_request_ids(connection, outbound_ids))
                ):
                    outbound_settled_at = time.monotonic()
                await asyncio.sleep(0.2)
            now = time.monotonic()
            firehose_settle_seconds = (firehose_settled_at or now) - load_over_at
            outbound_settle_seconds = (outbound_settled_at or now) - load_over_at
            ledger = await connection.fetch(
                "SELECT customer_id, request_id, source_event_id FROM ledger_event WHERE tenant_id = $1 ORDER BY id",
                self.tenant.id,
            )
            per_event = Counter((row["request_id"], row["source_event_id"]) for row in ledger)
            ledger_requests = {row["request_id"] for row in ledger}
            source_request_ids = await self._source_request_ids(connection, outbound_ids)
            processed = await self._applied_request_ids(connection)
        finally:
            await connection.close()
        accepted = self.fake_s2s.accepted(self.tenant.api_key)
        reached = {batch.batch.get("source_request_id") for batch in accepted}
        events_seen = Counter(
            event["data"]["source_message_id"]
            for batch in accepted
            for event in batch.batch.get("events", [])
            if "source_message_id" in event.get("data", {})
        )
        figures = Figures(
            scenario=scenario,
            firehose_acked=len(firehose_ids),
            firehose_lost=len(firehose_ids - ledger_requests),
            firehose_doubled=sum(count - 1 for count in per_event.values()),
            firehose_refused=self.acked.refused_firehose,
            firehose_lost_but_processed=len((firehose_ids - ledger_requests) & processed),
            outbound_acked=len(outbound_ids),
            outbound_lost=sum(source_request_ids.get(message_id) not in reached for message_id in outbound_ids),
            outbound_doubled_at_s2s=sum(count - 1 for count in events_seen.values()),
            outbound_refused=self.acked.refused_outbound,
            settle_seconds=round(max(firehose_settle_seconds, outbound_settle_seconds), 1),
            firehose_settle_seconds=round(firehose_settle_seconds, 1),
            outbound_settle_seconds=round(outbound_settle_seconds, 1),
            statuses=dict(self.acked.statuses),
        )
        figures.save()
        print(figures.line())
        return figures

    async def _applied_request_ids(self, connection: asyncpg.Connection) -> set[str]:
        rows = await connection.fetch("SELECT request_id FROM processed_request WHERE tenant_id = $1", self.tenant.id)
        return {row["request_id"] for row in rows}

    async def _delivered_message_ids(self, connection: asyncpg.Connection) -> set[str]:
        rows = await connection.fetch(
            "SELECT id::text AS id FROM outbound_message WHERE tenant_id = $1 AND status = 'delivered'", self.tenant.id
        )
        return {row["id"] for row in rows}

    async def _source_request_ids(self, connection: asyncpg.Connection, message_ids: list[str]) -> dict[str, str]:
        rows = await connection.fetch(
            "SELECT id::text AS id, batch->>'source_request_id' AS source FROM outbound_message"
            " WHERE id = ANY($1::uuid[])",
            [uuid.UUID(message_id) for message_id in message_ids],
        )
        return {row["id"]: row["source"] for row in rows}

    def _all_reached_s2s(self, source_request_ids: dict[str, str]) -> bool:
        reached = {batch.batch.get("source_request_id") for batch in self.fake_s2s.accepted(self.tenant.api_key)}
        return set(source_request_ids.values()) <= reached
