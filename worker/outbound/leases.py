"""Fast recovery of outbound delivery leases: a lease whose owner (a worker's liveness id,
shared/queues/liveness.py) no longer heartbeats is released at once, so the message is delivered
again within seconds of a crash rather than after the lease runs out.

A lease records its owner only when the worker runs a heartbeat; a lease without an owner (or
while Redis cannot say who is alive) still ends when it expires. A live owner keeps its lease for
as long as its delivery takes (up to OWNED_LEASE_SECONDS, a backstop).
"""

from __future__ import annotations

from datetime import datetime

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import session_scope
from shared.logging import get_logger
from shared.outbound.messages import OutboundMessageRepository
from shared.queues.liveness import alive_workers
from shared.transient import is_transient_queue_error

logger = get_logger(__name__)

# The longest a lease held by a live (heartbeating) worker lasts; released at once if it dies.
OWNED_LEASE_SECONDS = 300.0


async def release_leases_of_dead_workers(
    sessionmaker: async_sessionmaker[AsyncSession], redis: Redis, queue_name: str, now: datetime
) -> int:
    """Release every lease held by a worker whose heartbeat is gone; the number of messages freed."""
    async with session_scope(sessionmaker) as session:
        owners = await OutboundMessageRepository(session).lease_owners(now)
    if not owners:
        return 0
    try:
        alive = await alive_workers(redis, queue_name, owners)
    except Exception as error:
        if not is_transient_queue_error(error):
            raise
        return 0  # who is alive is unknown: leases end when they expire
    dead = [owner for owner in owners if owner not in alive]
    if not dead:
        return 0
    async with session_scope(sessionmaker) as session:
        released = await OutboundMessageRepository(session).release_leases_of(dead)
    logger.warning("outbound_leases_of_dead_workers_released", workers=len(dead), messages=released)
    return released
