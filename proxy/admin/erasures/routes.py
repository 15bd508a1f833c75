"""Admin route of data subject requests (CONTRACT §8): `GET /tenants/{t}/erasures`, newest first.

Every dsr_processing_request is listed: erasures with what they removed (counts), access and
portability requests as acknowledged (not performed). No personal data is kept in these records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from proxy.dependencies import SessionDep
from proxy.pagination import DEFAULT_PAGE_LIMIT, CursorQuery, LimitQuery, Page, cursor_position, page_of
from shared.inbound.erasure import data_subject_requests_page
from shared.tenants.rows import require_tenant
from shared.vocabulary import DataSubjectOutcome

router = APIRouter(prefix="/tenants/{tenant_id}/erasures", tags=["data subject requests"])


class DataSubjectRequestRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    request_id: str = Field(description="the Firehose request id")
    subject_request_id: str | None = Field(description="mParticle's id of the data subject request")
    request_type: str = Field(description="erasure, access or portability")
    regulation: str | None
    requested_by: str = Field(description="who asked: `mparticle` (Firehose dsr_processing_request)")
    outcome: DataSubjectOutcome = Field(description="`acknowledged` means not performed")
    customer_id: str | None
    removed: dict[str, Any] = Field(description="what the erasure removed, as counts by kind")
    recorded_at: datetime


@router.get("", summary="List the tenant's data subject requests (newest first)")
async def list_erasures(
    tenant_id: str, session: SessionDep, limit: LimitQuery = DEFAULT_PAGE_LIMIT, cursor: CursorQuery = None
) -> Page[DataSubjectRequestRead]:
    await require_tenant(session, tenant_id)
    after_id = cursor_position(cursor, int)
    rows = await data_subject_requests_page(session, tenant_id, limit=limit + 1, after_id=after_id)
    return page_of(rows, limit, DataSubjectRequestRead.model_validate, lambda row: row.id)
