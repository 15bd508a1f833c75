"""All ORM models, imported here so alembic sees one metadata."""

from shared.models.customer import CUSTOMER_STATUSES, Customer, LedgerEvent
from shared.models.customer_list import CustomerList, ListMember
from shared.models.incoming_error import IncomingError
from shared.models.outbound_message import (
    OUTBOUND_KINDS,
    OUTBOUND_STATUSES,
    WAITING_STATUSES,
    OutboundAttempt,
    OutboundMessage,
)
from shared.models.processed_request import ProcessedRequest
from shared.models.tenant import (
    ExternalEvent,
    InboundMapping,
    InboundSettings,
    OutboundSettings,
    SyncField,
    Tenant,
    config_revision_seq,
)

__all__ = [
    "CUSTOMER_STATUSES",
    "OUTBOUND_KINDS",
    "OUTBOUND_STATUSES",
    "WAITING_STATUSES",
    "Customer",
    "CustomerList",
    "ExternalEvent",
    "InboundMapping",
    "InboundSettings",
    "IncomingError",
    "LedgerEvent",
    "ListMember",
    "OutboundAttempt",
    "OutboundMessage",
    "OutboundSettings",
    "ProcessedRequest",
    "SyncField",
    "Tenant",
    "config_revision_seq",
]
