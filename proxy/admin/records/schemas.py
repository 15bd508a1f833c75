"""Admin API schemas of loyalty records: customers, their ledger, customer lists and members."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.inbound.customers import LedgerRecord
from shared.vocabulary import CustomerStatus, ListStatus

__all__ = [
    "CustomerListRead",
    "CustomerListUpdate",
    "CustomerRead",
    "CustomerStatus",
    "LedgerEventRead",
    "ListMemberRead",
    "ListStatus",
]


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class CustomerRead(ReadModel):
    id: str
    status: CustomerStatus
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class LedgerEventRead(LedgerRecord):
    model_config = ConfigDict(from_attributes=True)


class CustomerListRead(BaseModel):
    id: int
    name: str
    status: ListStatus
    audience_id: int | None
    member_count: int


class CustomerListUpdate(BaseModel):
    """`PATCH` body: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=500)
    status: ListStatus | None = None


class ListMemberRead(ReadModel):
    customer_id: str
    added_at: datetime
