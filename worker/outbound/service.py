"""Outbound delivery: claim a tenant's due messages, send them to mParticle S2S, record every
attempt and schedule resends (shared/mapping/backoff.py) or give up.

One delivery run serves one tenant, so tenants are delivered by separate arq jobs and a hanging
mParticle account only ever holds up its own tenant. A run loops while the tenant has due work,
and lingers for resends due within LINGER_SECONDS (the once-a-second dispatcher covers the rest).
PostgreSQL is the only truth: a killed worker's lease expires and the message is claimed again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.mapping.backoff import next_resend_delay_seconds
from shared.mapping.outbound import encode_batch
from shared.outbound.limits import MAX_BULK_BATCHES, plan_requests
from shared.outbound.messages import AttemptResult, ClaimedMessage, OutboundMessageRepository
from shared.queues.delivery import delivery_job
from shared.queues.jobs import JobQueue
from shared.settings import Settings
from shared.tenants.config import TenantConfigCache
from worker.outbound.mparticle_client import (
    Delivered,
    DeliveryOutcome,
    MParticleClient,
    Permanent,
    Retryable,
    S2SDestination,
)

logger = logging.getLogger(__name__)

# How long one run keeps claiming before it hands over to the next dispatch.
MAX_RUN_SECONDS = 10.0
# A run waits for a resend due this soon instead of leaving it to the next dispatch.
LINGER_SECONDS = 1.0
LINGER_STEP_SECONDS = 0.2
# Messages claimed per round: one S2S bulk request's worth.
CLAIM_LIMIT = MAX_BULK_BATCHES
# When mParticle refuses a bulk request as a whole (400/413), its batches are sent one by one.
SPLIT_STATUSES = frozenset({400, 413})
SPLIT_CONCURRENCY = 10
DISPATCH_TENANT_LIMIT = 5000
NOT_CONNECTED_ERROR = "cancelled: the tenant is not connected (no outbound settings)"


def lease_seconds(settings: Settings) -> float:
    """How long a claim is exclusive: a bulk request, a one-by-one fallback round, and a margin."""
    return 3 * settings.outbound_timeout_seconds + 15


@dataclass
class DeliveryRun:
    """What one run did, for logs and tests."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    cancelled: int = 0

    def count(self, results: Sequence[AttemptResult]) -> None:
        for result in results:
            if result.new_status == "delivered":
                self.delivered += 1
            elif result.new_status == "retrying":
                self.retrying += 1
            else:
                self.failed += 1


def _utc_now() -> datetime:
    return datetime.now(UTC)


class OutboundDelivery:
    """Delivers outbound messages; built per job from the worker's pooled resources."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: MParticleClient,
        tenant_configs: TenantConfigCache,
        settings: Settings,
        clock: Callable[[], datetime] = _utc_now,
        jitter: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._client = client
        self._tenant_configs = tenant_configs
        self._settings = settings
        self._clock = clock
        self._jitter = jitter
        self._sleep = sleep

    async def dispatch_due(self, queue: JobQueue) -> int:
        """Enqueue a delivery job for every tenant with a due message; the number of tenants."""
        async with session_scope(self._sessionmaker) as session:
            tenant_ids = await OutboundMessageRepository(session).tenants_with_due_messages(
                self._clock(), DISPATCH_TENANT_LIMIT
            )
        for tenant_id in tenant_ids:
            await queue.enqueue(delivery_job(queue.queue_name, tenant_id, time.time()))
        return len(tenant_ids)

    async def deliver_tenant(self, tenant_id: str) -> DeliveryRun:
        """Send the tenant's due messages until none is left (or MAX_RUN_SECONDS have passed)."""
        run = DeliveryRun()
        deadline = time.monotonic() + MAX_RUN_SECONDS
        lease = timedelta(seconds=lease_seconds(self._settings))
        while time.monotonic() < deadline:
            now = self._clock()
            async with session_scope(self._sessionmaker) as session:
                repository = OutboundMessageRepository(session)
                claimed = await repository.claim_due(tenant_id, now, now + lease, CLAIM_LIMIT)
                next_due_at = None if claimed else await repository.next_due_at(tenant_id, now)
            if not claimed:
                wait_seconds = (next_due_at - now).total_seconds() if next_due_at else None
                # Due now yet not claimable means another worker holds it: nothing to wait for.
                if wait_seconds is None or wait_seconds <= 0 or wait_seconds > LINGER_SECONDS:
                    break
                # In short steps, so a message accepted meanwhile is not kept waiting for it.
                await self._sleep(min(wait_seconds, LINGER_STEP_SECONDS))
                continue
            destination = await self._destination(tenant_id)
            if destination is None:
                async with session_scope(self._sessionmaker) as session:
                    await OutboundMessageRepository(session).cancel_claimed(claimed, NOT_CONNECTED_ERROR)
                run.cancelled += len(claimed)
                continue
            results = await self._send_claimed(tenant_id, destination, claimed)
            async with session_scope(self._sessionmaker) as session:
                await OutboundMessageRepository(session).record_attempts(results)
            run.count(results)
        return run

    async def _destination(self, tenant_id: str) -> S2SDestination | None:
        config = self._tenant_configs.get(tenant_id)
        if config is None or config.outbound is None:
            await self._tenant_configs.refresh()
            config = self._tenant_configs.get(tenant_id)
        if config is None or config.outbound is None:
            return None
        outbound = config.outbound
        return S2SDestination(outbound.api_url, outbound.api_key, outbound.api_secret)

    async def _send_claimed(
        self, tenant_id: str, destination: S2SDestination, claimed: Sequence[ClaimedMessage]
    ) -> list[AttemptResult]:
        """Coalesce the claimed messages into as few S2S requests as the limits allow, sent together."""
        encoded = [encode_batch(message.batch) for message in claimed]
        groups = plan_requests([len(body) for body in encoded])
        sent = await asyncio.gather(
            *(
                self._send_group(tenant_id, destination, [claimed[i] for i in group], [encoded[i] for i in group])
                for group in groups
            )
        )
        return [result for group_results in sent for result in group_results]

    async def _send_group(
        self,
        tenant_id: str,
        destination: S2SDestination,
        messages: Sequence[ClaimedMessage],
        bodies: Sequence[bytes],
    ) -> list[AttemptResult]:
        attempted_at = self._clock()
        outcome = await self._send(tenant_id, destination, bodies)
        if len(messages) > 1 and isinstance(outcome, Permanent) and outcome.status_code in SPLIT_STATUSES:
            # One bad batch must not fail the others: the batches' own answers decide.
            logger.warning(
                "outbound bulk refused tenant_id=%s batches=%d (%s); sending one by one",
                tenant_id,
                len(messages),
                outcome.error,
            )
            limit = asyncio.Semaphore(SPLIT_CONCURRENCY)

            async def alone(message: ClaimedMessage, body: bytes) -> list[AttemptResult]:
                async with limit:
                    return await self._send_group(tenant_id, destination, [message], [body])

            split = await asyncio.gather(*(alone(m, b) for m, b in zip(messages, bodies, strict=True)))
            return [result for results in split for result in results]
        finished_at = self._clock()
        logger.info(
            "outbound delivery tenant_id=%s messages=%d outcome=%s status=%s",
            tenant_id,
            len(messages),
            type(outcome).__name__,
            getattr(outcome, "status_code", None),
        )
        return [self._attempt_result(message, attempted_at, finished_at, outcome) for message in messages]

    async def _send(self, tenant_id: str, destination: S2SDestination, bodies: Sequence[bytes]) -> DeliveryOutcome:
        try:
            return await self._client.send(destination, bodies)
        except Exception as exc:  # a bug must not strand the claimed messages: resend them later
            logger.exception("outbound send crashed tenant_id=%s", tenant_id)
            return Retryable(None, f"unexpected error: {exc.__class__.__name__}")

    def _attempt_result(
        self, message: ClaimedMessage, attempted_at: datetime, finished_at: datetime, outcome: DeliveryOutcome
    ) -> AttemptResult:
        """The message's next state after this attempt."""
        new_status, error, next_attempt_at, delivered_at = "delivered", None, None, None
        if isinstance(outcome, Delivered):
            delivered_at = finished_at
        else:
            error = outcome.error
            delay_seconds = None
            if isinstance(outcome, Retryable):
                delay_seconds = next_resend_delay_seconds(
                    message.attempts + 1,
                    max_resends=self._settings.outbound_max_resends,
                    base_seconds=self._settings.outbound_retry_base_seconds,
                    jitter_unit=self._jitter(),
                    retry_after_seconds=outcome.retry_after_seconds,
                )
            if delay_seconds is None:
                new_status = "failed"
            else:
                new_status, next_attempt_at = "retrying", finished_at + timedelta(seconds=delay_seconds)
        return AttemptResult(
            message_id=message.id,
            lease_expires_at=message.lease_expires_at,
            attempted_at=attempted_at,
            status_code=outcome.status_code,
            error=error,
            new_status=new_status,
            next_attempt_at=next_attempt_at,
            delivered_at=delivered_at,
        )
