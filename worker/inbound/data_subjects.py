"""Data subject requests (CONTRACT §8, firehose.md §4.6).

The subject is found through its identities (shared.mapping.data_subjects). An erasure removes
that customer's personal data (shared.inbound.erasure); access and portability are acknowledged
and recorded as not performed. Every request is recorded in data_subject_request, read through
GET /api/v1/tenants/{t}/erasures.
"""

from __future__ import annotations

from shared.inbound.customers import CustomerBatchRepository
from shared.inbound.erasure import erase_customer, record_data_subject_request
from shared.inbound.schemas import DsrProcessingRequest
from shared.mapping.data_subjects import subject_candidates, subject_values
from shared.vocabulary import DataSubjectOutcome, DataSubjectRequestType
from worker.inbound.context import RequestInApplication
from worker.inbound.resolution import find_senders

REQUESTED_BY = "mparticle"


async def apply_data_subject_request(context: RequestInApplication, request: DsrProcessingRequest) -> str:
    """Erase (or acknowledge) and record the request; returns a one-line summary."""
    request_type = request.subject_request_type or "unknown"
    record = {
        "tenant_id": context.tenant.id,
        "request_id": request.id,
        "subject_request_id": request.subject_request_id,
        "request_type": request_type[:32],
        "regulation": request.regulation[:32] if request.regulation else None,
        "requested_by": REQUESTED_BY,
    }
    if request_type != DataSubjectRequestType.ERASURE:
        await record_data_subject_request(
            context.session, **record, outcome=DataSubjectOutcome.ACKNOWLEDGED, removed={}
        )
        return f"DSR {request_type!r} acknowledged; not performed"
    values = subject_values(request.subject_identities)
    inbound = context.inbound
    candidates = subject_candidates(
        context.tenant.id, inbound.customer_identifier_field, inbound.loyalty_identifier_field, values
    )
    found = await find_senders(CustomerBatchRepository(context.session), candidates)
    customer = next((found[candidate] for candidate in candidates if candidate in found), None)
    if customer is None:
        outcome = DataSubjectOutcome.NO_CUSTOMER if candidates else DataSubjectOutcome.NO_IDENTITY
        await record_data_subject_request(context.session, **record, outcome=outcome, removed={})
        return f"DSR erasure: {outcome}"
    counts = await erase_customer(context.session, context.tenant.id, customer.id, list(values.values()))
    await record_data_subject_request(
        context.session, **record, outcome=DataSubjectOutcome.ERASED, customer_id=customer.id, removed=counts.as_dict()
    )
    return f"DSR erasure: customer {customer.id} erased"
