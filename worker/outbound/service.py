"""Outbound delivery: claim a tenant's due messages, send them to mParticle S2S, record every
attempt and schedule resends (shared/mapping/backoff.py) or give up.

One delivery run serves one tenant, so tenants are delivered by separate arq jobs and a hanging
mParticle account only ever holds up its own tenant. A run loops while the tenant has due work,
and lingers for resends due within LINGER_SECONDS (the once-a-second dispatcher covers the rest).
PostgreSQL is the only truth: a killed worker's lease expires (or is released at once when its
heartbeat is gone, worker/outbound/leases.py) and the message is claimed again. Requests to each
mParticle account are paced (worker/outbound/pacing.py); an outcome mParticle gave is recorded,
retried through PostgreSQL outages, not earned again (worker/outbound/outcome_recorder.py).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.logging import get_logger
from shared.mapping.backoff import next_resend_delay_seconds
from shared.mapping.outbound import encode_batch
from shared.observability.metrics import record_outbound_results
from shared.outbound.limits import MAX_BULK_BATCHES, plan_requests
from shared.outbound.messages import AttemptResult, ClaimedMessage, OutboundMessageRepository
from shared.queues.delivery import delivery_job
from shared.queues.jobs import JobQueue
from shared.settings import Settings
from shared.tenants.config import TenantConfigCache
from shared.vocabulary import OutboundStatus
from worker.outbound.leases import OWNED_LEASE_SECONDS
from worker.outbound.mparticle_client import (
    Delivered,
    DeliveryOutcome,
    MParticleClient,
    Permanent,
    Retryable,
    S2SDestination,
)
from worker.outbound.outcome_recorder import record_outcomes
from worker.outbound.pacing import AccountPacer, AccountPacers

logger = get_logger(__name__)

# How long one run keeps claiming before it hands over to the next dispatch.
MAX_RUN_SECONDS = 10.0
# A run waits for a resend due this soon instead of leaving it to the next dispatch.
LINGER_SECONDS = 1.0
LINGER_STEP_SECONDS = 0.2
# Messages claimed per round: one S2S bulk request's worth, and no more than the account's pace
# sends in CLAIM_SECONDS (a slow pace must not hold claimed messages for long).
CLAIM_LIMIT = MAX_BULK_BATCHES
CLAIM_SECONDS = 1.0
# Claimed messages wait at most this long for an account paused by a 429's Retry-After; beyond,
# they are given back (due again, no attempt counted) and the run ends until the pause is over.
MAX_PACING_WAIT_SECONDS = 5.0
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

    def as_log_fields(self) -> dict[str, int]:
        """The counts by name, as the run's log line carries them."""
        return asdict(self)

    def count(self, results: Sequence[AttemptResult]) -> None:
        for result in results:
            if result.new_status == OutboundStatus.DELIVERED:
                self.delivered += 1
            elif result.new_status == OutboundStatus.RETRYING:
                self.retrying += 1
            else:
                self.failed += 1


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _claim_limit(pacer: AccountPacer) -> int:
    return max(1, min(CLAIM_LIMIT, int(pacer.rate_batches_per_second * CLAIM_SECONDS)))


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
        pacers: AccountPacers | None = None,
        lease_owner: str | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        # A fresh set when none is given (tests): the worker passes its process-wide one.
        self._pacers = pacers if pacers is not None else AccountPacers()
        self._lease_owner = lease_owner
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
        # A worker that heartbeats keeps its leases while it lives (released at once if it dies).
        lease = timedelta(seconds=OWNED_LEASE_SECONDS if self._lease_owner else lease_seconds(self._settings))
        while time.monotonic() < deadline:
            destination = await self._destination(tenant_id)
            pacer = None if destination is None else self._pacers.for_destination(destination)
            if pacer is not None and pacer.paused_for_seconds() > MAX_PACING_WAIT_SECONDS:
                break  # mParticle asked this account to wait: the dispatcher comes back
            limit = CLAIM_LIMIT if pacer is None else _claim_limit(pacer)
            now = self._clock()
            async with session_scope(self._sessionmaker) as session:
                repository = OutboundMessageRepository(session)
                claimed = await repository.claim_due(tenant_id, now, now + lease, limit, owner=self._lease_owner)
                next_due_at = None if claimed else await repository.next_due_at(tenant_id, now)
            if not claimed:
                wait_seconds = (next_due_at - now).total_seconds() if next_due_at else None
                # Due now yet not claimable means another worker holds it: nothing to wait for.
                if wait_seconds is None or wait_seconds <= 0 or wait_seconds > LINGER_SECONDS:
                    break
                # In short steps, so a message accepted meanwhile is not kept waiting for it.
                await self._sleep(min(wait_seconds, LINGER_STEP_SECONDS))
                continue
            if destination is None or pacer is None:
                async with session_scope(self._sessionmaker) as session:
                    await OutboundMessageRepository(session).cancel_claimed(claimed, NOT_CONNECTED_ERROR)
                run.cancelled += len(claimed)
                continue
            try:
                results = await self._send_claimed(tenant_id, destination, pacer, claimed)
                await record_outcomes(self._sessionmaker, results, now=self._clock())
            except BaseException:  # cut off (job timeout, outage): let the messages go at once
                await self._release_quietly(claimed)
                raise
            record_outbound_results([result.new_status for result in results])
            run.count(results)
        return run

    async def _release_quietly(self, claimed: Sequence[ClaimedMessage]) -> None:
        try:
            async with session_scope(self._sessionmaker) as session:
                await OutboundMessageRepository(session).release_claimed(claimed)
        except Exception as error:  # PostgreSQL is away: the leases end when they expire
            logger.warning("outbound_leases_not_released", messages=len(claimed), error=error.__class__.__name__)

    async def _destination(self, tenant_id: str) -> S2SDestination | None:
        config = self._tenant_configs.get(tenant_id)
        if config is None or config.outbound is None:
            await self._tenant_configs.refresh()
            config = self._tenant_configs.get(tenant_id)
        if config is None or config.outbound is None:
            return None
        outbound = config.outbound
        # Decrypted only here, to send (SecretUnreadable when SECRET_KEY lacks the key it was stored with).
        api_secret = self._settings.secret_box().decrypt(outbound.api_secret_encrypted)
        return S2SDestination(outbound.api_url, outbound.api_key, api_secret)

    async def _send_claimed(
        self, tenant_id: str, destination: S2SDestination, pacer: AccountPacer, claimed: Sequence[ClaimedMessage]
    ) -> list[AttemptResult]:
        """Coalesce the claimed messages into requests within the S2S limits and the account's pace,
        each sent as soon as the pace allows (without waiting for the previous answer)."""
        encoded = [encode_batch(message.batch) for message in claimed]
        groups = plan_requests([len(body) for body in encoded], max_batches=pacer.batches_per_request())
        sending: list[asyncio.Task[list[AttemptResult]]] = []
        unsent: list[ClaimedMessage] = []
        for group in groups:
            messages, bodies = [claimed[i] for i in group], [encoded[i] for i in group]
            if unsent or not await pacer.acquire(len(group), max_pause_seconds=MAX_PACING_WAIT_SECONDS):
                unsent.extend(messages)
                continue
            sending.append(asyncio.create_task(self._send_group(tenant_id, destination, pacer, messages, bodies)))
        sent = await asyncio.gather(*sending)
        if unsent:
            await self._release_quietly(unsent)
        return [result for group_results in sent for result in group_results]

    async def _send_group(
        self,
        tenant_id: str,
        destination: S2SDestination,
        pacer: AccountPacer,
        messages: Sequence[ClaimedMessage],
        bodies: Sequence[bytes],
    ) -> list[AttemptResult]:
        attempted_at = self._clock()
        outcome = await self._send(tenant_id, destination, bodies)
        pacer.observe(outcome)
        if len(messages) > 1 and isinstance(outcome, Permanent) and outcome.status_code in SPLIT_STATUSES:
            # One bad batch must not fail the others: the batches' own answers decide.
            logger.warning(
                "outbound_bulk_refused_sending_one_by_one",
                tenant_id=tenant_id,
                batches=len(messages),
                status_code=outcome.status_code,
            )
            limit = asyncio.Semaphore(SPLIT_CONCURRENCY)
            unsent: list[ClaimedMessage] = []

            async def alone(message: ClaimedMessage, body: bytes) -> list[AttemptResult]:
                async with limit:
                    if not await pacer.acquire(1, max_pause_seconds=MAX_PACING_WAIT_SECONDS):
                        unsent.append(message)
                        return []
                    return await self._send_group(tenant_id, destination, pacer, [message], [body])

            split = await asyncio.gather(*(alone(m, b) for m, b in zip(messages, bodies, strict=True)))
            if unsent:
                await self._release_quietly(unsent)
            return [result for results in split for result in results]
        finished_at = self._clock()
        logger.info(
            "outbound_request_sent",
            tenant_id=tenant_id,
            messages=len(messages),
            outcome=type(outcome).__name__,
            status_code=outcome.status_code,
        )
        return [self._attempt_result(message, attempted_at, finished_at, outcome) for message in messages]

    async def _send(self, tenant_id: str, destination: S2SDestination, bodies: Sequence[bytes]) -> DeliveryOutcome:
        try:
            return await self._client.send(destination, bodies)
        except Exception as exc:  # a bug must not strand the claimed messages: resend them later
            logger.exception("outbound_send_crashed", tenant_id=tenant_id)
            return Retryable(None, f"unexpected error: {exc.__class__.__name__}")

    def _attempt_result(
        self, message: ClaimedMessage, attempted_at: datetime, finished_at: datetime, outcome: DeliveryOutcome
    ) -> AttemptResult:
        """The message's next state after this attempt."""
        new_status, error, next_attempt_at, delivered_at = OutboundStatus.DELIVERED, None, None, None
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
                new_status = OutboundStatus.FAILED
            else:
                new_status, next_attempt_at = OutboundStatus.RETRYING, finished_at + timedelta(seconds=delay_seconds)
        return AttemptResult(
            message_id=message.id,
            lease_expires_at=message.lease_expires_at,
            attempted_at=attempted_at,
            status_code=outcome.status_code,
            error=error,
            new_status=new_status,
            next_attempt_at=next_attempt_at,
            delivered_at=delivered_at,
            trigger=message.trigger,
        )
