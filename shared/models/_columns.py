"""Column helpers shared by the models."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, String, func
from sqlalchemy.orm import Mapped, mapped_column

from shared.vocabulary import sql_in


def created_at_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


def updated_at_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now())


def vocabulary_column(name: str, vocabulary: Iterable[str], length: int, **options: Any) -> Mapped[str]:
    """The NOT NULL string column `name`, checked to hold one of `vocabulary`'s values (the check
    is named after the column: ck_<table>_<name>)."""
    check = CheckConstraint(sql_in(name, vocabulary), name=name)
    return mapped_column(String(length), check, nullable=False, **options)
