"""What every inbound handler works with: one request being applied in one transaction, its
tenant's settings, error logging into that same transaction, and customer resolution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.errorlog.writer import record_incoming_error
from shared.errors import ErrorCode, ErrorSource
from shared.inbound.customer_lists import CustomerListRepository
from shared.inbound.customers import CustomerRecord, CustomerRepository
from shared.inbound.schemas import FirehoseRequest
from shared.mapping.inbound import CustomerAction, decide_customer, identifier_attributes, new_customer_id
from shared.tenants.config import InboundConfig, TenantConfig

# Inbound settings of a connected tenant that never saved any (the admin API shows the same defaults).
DEFAULT_INBOUND = InboundConfig(
    customer_identifier_field="customer",
    loyalty_identifier_field="id",
    track_audience_data=False,
    auto_subscribe=False,
)


@dataclass
class InboundRequest:
    """A validated Firehose request of one tenant, being applied in `session`'s transaction."""

    session: AsyncSession
    tenant: TenantConfig
    inbound: InboundConfig
    request: FirehoseRequest
    payload: dict[str, Any]
    received_at: datetime

    @property
    def customers(self) -> CustomerRepository:
        return CustomerRepository(self.session, self.tenant.id)

    @property
    def lists(self) -> CustomerListRepository:
        return CustomerListRepository(self.session, self.tenant.id)

    async def log_error(self, source: ErrorSource, code: ErrorCode, message: str) -> None:
        """Log an error about this request, in the same transaction as the rest of its effects."""
        await record_incoming_error(
            self.session,
            tenant_id=self.tenant.id,
            source=source,
            error_code=code,
            message=message,
            created_at=self.received_at,
            request_id=self.request.id,
            payload=self.payload,
        )

    async def resolve_customer(self, identifier: str, *, yields_opt_in: bool) -> CustomerRecord | None:
        """The customer the identifier names: found, or created (active with an opt_in, inactive
        with auto-subscribe); None when it is unknown and may not be created."""
        field = self.inbound.loyalty_identifier_field
        existing = await self.customers.find_by_identifier(field, identifier)
        action = decide_customer(
            existing.status if existing else None,
            yields_opt_in=yields_opt_in,
            auto_subscribe=self.inbound.auto_subscribe,
        )
        if action is CustomerAction.USE_EXISTING:
            return existing
        if action is CustomerAction.REJECT:
            return None
        status = "active" if action is CustomerAction.CREATE_ACTIVE else "inactive"
        return await self.customers.create_if_absent(
            new_customer_id(self.tenant.id, field, identifier), status, identifier_attributes(field, identifier)
        )

    def describe_identifier(self, identifier: str) -> str:
        """How a log message names the sender: `customer 'C-1' (loyalty id)`."""
        return (
            f"{self.inbound.customer_identifier_field} {identifier!r} (loyalty {self.inbound.loyalty_identifier_field})"
        )
