"""Recording what mParticle answered: an outcome already earned is written, not earned again.

When PostgreSQL refuses the write of a delivery round's outcomes (connection lost, server
restarting, serialization failure), the worker keeps the outcomes in memory and retries the write
(shared/transient.py's policy) for as long as its leases hold; only then does it give up, and the
messages are claimed again once their leases expire, and resent with the same ids (the resend
window documented in shared/outbound/messages.py). Errors that are not transient are raised at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.outbound.messages import AttemptResult, OutboundMessageRepository
from shared.transient import is_transient_database_error, retrying

FIRST_DELAY_SECONDS = 0.1
MAX_DELAY_SECONDS = 2.0
# Stop retrying this long before the leases expire: a write after that may land on re-claimed messages.
LEASE_MARGIN_SECONDS = 2.0
MIN_RETRY_SECONDS = 1.0


async def record_outcomes(
    sessionmaker: async_sessionmaker[AsyncSession],
    results: Sequence[AttemptResult],
    *,
    now: datetime,
) -> None:
    """Write a round's attempts and new states in one transaction, retrying transient failures
    until shortly before the earliest lease expires."""
    if not results:
        return
    lease_expires_at = min(result.lease_expires_at for result in results)
    retry_seconds = max((lease_expires_at - now).total_seconds() - LEASE_MARGIN_SECONDS, MIN_RETRY_SECONDS)
    policy = retrying(
        "outbound outcome write",
        retry_on=is_transient_database_error,
        first_delay_seconds=FIRST_DELAY_SECONDS,
        max_delay_seconds=MAX_DELAY_SECONDS,
        give_up_after_seconds=retry_seconds,
    )
    async for attempt in policy:
        with attempt:
            async with session_scope(sessionmaker) as session:
                await OutboundMessageRepository(session).record_attempts(results)
