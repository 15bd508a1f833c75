"""Fault injection under concurrent Firehose and outbound load, with real processes: a worker and a
proxy SIGKILLed, Redis stopped for 20 s, PostgreSQL stopped twice (5 s, then 12 s). Afterwards
every acknowledged Firehose event is in the ledger exactly once, every 202-acknowledged outbound
call reached the fake S2S, and S2S saw no event twice (by source_message_id) except in the
documented window (a worker killed between S2S's answer and the write of the outcome).

Each scenario prints its figures (pytest -s) and writes them to tests/faults/results/<scenario>.json;
docs/failure-table.md tabulates them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tests.faults.harness import Figures, Rig
from tests.private_postgres import PrivatePostgres
from tests.private_redis import PrivateRedis


async def run_scenario(rig: Rig, scenario: str, faults: Callable[[], Awaitable[None]]) -> Figures:
    """Start proxy and worker, load them, inject `faults`, keep loading a little, then verify."""
    await rig.start_proxy()
    rig.start_worker()
    rig.start_load()
    try:
        await asyncio.sleep(3.0)  # steady load before the first fault
        await faults()
        await asyncio.sleep(3.0)  # load after the last fault
        await rig.stop_load()
        figures = await rig.settle_and_verify(scenario)
        assert figures.firehose_acked > 0 and figures.outbound_acked > 0, figures.line()
        assert figures.firehose_lost == 0, figures.line()
        assert figures.firehose_doubled == 0, figures.line()
        assert figures.outbound_lost == 0, figures.line()
    except BaseException:
        print(rig.outputs())  # the processes' logs (tails; whole files in the test's tmp_path)
        raise
    return figures


async def test_worker_sigkill(rig: Rig) -> None:
    async def faults() -> None:
        rig.kill(rig.worker)
        await asyncio.sleep(1.0)
        rig.start_worker()

    figures = await run_scenario(rig, "worker_sigkill", faults)
    # The documented window: a delivery S2S accepted whose outcome the killed worker never wrote is
    # sent again (the same batch, same source ids); at most the batches it had in flight.
    assert figures.outbound_doubled_at_s2s <= 100, figures.line()


async def test_proxy_sigkill(rig: Rig) -> None:
    async def faults() -> None:
        rig.kill(rig.proxy)
        await asyncio.sleep(1.0)
        await rig.start_proxy()

    figures = await run_scenario(rig, "proxy_sigkill", faults)
    assert figures.outbound_doubled_at_s2s == 0, figures.line()


async def test_redis_stopped_for_20_seconds(rig: Rig, fault_redis: PrivateRedis) -> None:
    async def faults() -> None:
        fault_redis.stop()
        await asyncio.sleep(20.0)
        await fault_redis.start()  # its append-only file brings back what it had acknowledged

    figures = await run_scenario(rig, "redis_stopped_20s", faults)
    assert figures.firehose_refused == 0, "PostgreSQL was up: every Firehose call is answered 200"
    assert figures.outbound_doubled_at_s2s == 0, figures.line()


async def test_postgresql_stopped_twice(rig: Rig, fault_postgres: PrivatePostgres) -> None:
    async def faults() -> None:
        for outage_seconds in (5.0, 12.0):
            fault_postgres.stop()
            await asyncio.sleep(outage_seconds)
            await fault_postgres.start()
            await asyncio.sleep(3.0)

    figures = await run_scenario(rig, "postgresql_stopped_5s_and_12s", faults)
    assert figures.firehose_refused == 0, "Firehose needs no PostgreSQL while Redis is up"
    assert figures.outbound_doubled_at_s2s == 0, figures.line()
