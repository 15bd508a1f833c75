"""All ORM models, imported here so alembic sees one metadata."""

from shared.models.customer import Customer, LedgerEvent
from shared.models.customer_list import CustomerList, ListMember
from shared.models.data_subject_request import DataSubjectRequest
from shared.models.firehose_spool import SpooledRequest
from shared.models.incoming_error import IncomingError
from shared.models.outbound_message import OutboundAttempt, OutboundMessage
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
from shared.vocabulary import WAITING_STATUSES

__all__ = [
    "WAITING_STATUSES",
    "Customer",
    "CustomerList",
    "DataSubjectRequest",
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
    "SpooledRequest",
    "SyncField",
    "Tenant",
    "config_revision_seq",
]
