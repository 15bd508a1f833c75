"""Kicks: ask the worker to deliver a tenant's outbound messages now, off the request path.

A kick is an optimisation (the worker's once-a-second dispatcher finds every due message anyway),
so it never holds up an answer whose durability is already settled, and a slow or absent Redis
costs nothing but the kick. The outbound writer reports the tenants of each committed batch; the
kicker enqueues one delivery job per tenant per round (at most one round per ROUND_SECONDS),
however many messages and batches the round covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from shared.logging import get_logger
from shared.queues.delivery import delivery_job
from shared.queues.jobs import JobQueue

logger = get_logger(__name__)

KICK_TIMEOUT_SECONDS = 1.0
STOP_WAIT_SECONDS = 2 * KICK_TIMEOUT_SECONDS
# At most one kick round per this long (kicks asked for meanwhile wait for the next round).
ROUND_SECONDS = 0.05


async def kick_delivery(queue: JobQueue, tenant_id: str) -> None:
    """Best effort: ask the worker to deliver the tenant's messages now. Call after the commit."""
    try:
        async with asyncio.timeout(KICK_TIMEOUT_SECONDS):
            await queue.enqueue(delivery_job(queue.queue_name, tenant_id, time.time()))
    except Exception as exc:  # Redis down or slow: the worker's schedule picks the message up
        logger.warning("outbound_kick_not_enqueued", tenant_id=tenant_id, error=exc.__class__.__name__)


class DeliveryKicker:
    """Coalesces kick requests: each round enqueues one delivery job per tenant asked for since the last."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._pending: set[str] = set()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def kick(self, tenant_ids: Iterable[str]) -> None:
        """Ask for a kick of each tenant (returns at once)."""
        self._pending.update(tenant_ids)
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="delivery-kicker")

    async def stop(self) -> None:
        """Send the kicks still pending, then stop (cancelled after STOP_WAIT_SECONDS: the worker's
        dispatcher finds those messages anyway). Finishing beats cancelling: a Redis command
        cancelled midway can hold up shutdown."""
        self._closing = True
        self._wakeup.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=STOP_WAIT_SECONDS)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing or self._pending:
            await self._wakeup.wait()
            self._wakeup.clear()
            started_at = loop.time()
            tenant_ids, self._pending = self._pending, set()
            for tenant_id in sorted(tenant_ids):
                await kick_delivery(self._queue, tenant_id)
            # A busy proxy commits hundreds of batches a second: one round per ROUND_SECONDS is
            # enough for a delivery job that then claims everything due.
            if not self._closing:
                await asyncio.sleep(max(0.0, started_at + ROUND_SECONDS - loop.time()))
