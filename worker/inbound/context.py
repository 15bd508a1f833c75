"""What every inbound handler works with: one request being applied in one transaction, its
tenant's settings, and error logging into that same transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.errorlog.writer import record_incoming_error
from shared.errors import ErrorCode, ErrorSource
from shared.inbound.customer_lists import CustomerListRepository
from shared.inbound.schemas import FirehoseRequest, MessageType
from shared.queues.firehose import ReplayOf
from shared.tenants.config import InboundConfig, TenantConfig


@dataclass
class RequestInApplication:
    """A validated Firehose request of one tenant, being applied in `session`'s transaction.

    A replay (`replay_of`) logs no new error entries: what went wrong becomes the replay outcome
    recorded on the entry being replayed."""

    session: AsyncSession
    tenant: TenantConfig
    inbound: InboundConfig
    message_type: MessageType
    request_id: str
    # The validated model (None when the message is invalid: it is then only logged). Audiences
    # and DSR are read through it; the pure core reads an event request's decoded JSON `payload`.
    request: FirehoseRequest | None
    payload: dict[str, Any]
    received_at: datetime
    replay_of: ReplayOf | None = None
    # Error codes met while applying (all of them, logged or not): the replay outcome.
    problems: list[ErrorCode] = field(default_factory=list)
    ledger_events_recorded: int = 0

    @property
    def lists(self) -> CustomerListRepository:
        return CustomerListRepository(self.session, self.tenant.id)

    async def log_error(self, source: ErrorSource, code: ErrorCode, message: str) -> None:
        """Log an error about this request, in the same transaction as the rest of its effects."""
        self.problems.append(code)
        if self.replay_of is not None:
            return
        await record_incoming_error(
            self.session,
            tenant_id=self.tenant.id,
            source=source,
            error_code=code,
            message=message,
            created_at=self.received_at,
            request_id=self.request_id,
            payload=self.payload,
        )

    def describe_identifier(self, identifier: str) -> str:
        """How a log message names the sender: `customer 'C-1' (loyalty id)`."""
        return (
            f"{self.inbound.customer_identifier_field} {identifier!r} (loyalty {self.inbound.loyalty_identifier_field})"
        )

    def replay_outcome(self) -> str:
        """What a replay of this request did, as the entry shows it."""
        if self.problems:
            return "failed: " + ", ".join(dict.fromkeys(self.problems))
        return f"applied: {self.ledger_events_recorded} ledger event(s) recorded"
