"""The closed vocabularies (shared.vocabulary) are what the migrated database accepts: each status,
kind and trigger column's check constraint allows exactly the enum's values, and the models build
the same constraints from the enums (`alembic check` does not compare check constraints)."""

from __future__ import annotations

import re
from enum import StrEnum

import pytest
from sqlalchemy import CheckConstraint, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.models import Customer, CustomerList, OutboundAttempt, OutboundMessage
from shared.vocabulary import AttemptTrigger, CustomerStatus, ListStatus, OutboundKind, OutboundStatus, sql_in

CONSTRAINED_COLUMNS: list[tuple[type, str, type[StrEnum]]] = [
    (OutboundMessage, "status", OutboundStatus),
    (OutboundMessage, "kind", OutboundKind),
    (OutboundMessage, "next_attempt_trigger", AttemptTrigger),
    (OutboundAttempt, "trigger", AttemptTrigger),
    (Customer, "status", CustomerStatus),
    (CustomerList, "status", ListStatus),
]


def _table(model: type) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


@pytest.mark.parametrize(("model", "column", "vocabulary"), CONSTRAINED_COLUMNS)
async def test_the_database_accepts_exactly_the_vocabulary(
    engine: AsyncEngine, model: type, column: str, vocabulary: type[StrEnum]
) -> None:
    table = _table(model)
    async with engine.connect() as connection:
        definition = await connection.scalar(
            text(
                "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
                " WHERE t.relname = :table AND c.contype = 'c' AND c.conname = :name"
            ),
            {"table": table.name, "name": f"ck_{table.name}_{column}"},
        )
    assert definition is not None, f"no check constraint on {table.name}.{column}"
    assert re.findall(r"'([a-z_]+)'", definition) == [member.value for member in vocabulary]


@pytest.mark.parametrize(("model", "column", "vocabulary"), CONSTRAINED_COLUMNS)
def test_the_model_builds_its_constraint_from_the_vocabulary(
    model: type, column: str, vocabulary: type[StrEnum]
) -> None:
    table = _table(model)
    constraints = [
        str(constraint.sqltext)
        for constraint in (*table.constraints, *table.c[column].constraints)  # on the table or on the column
        if isinstance(constraint, CheckConstraint) and constraint.name == f"ck_{table.name}_{column}"
    ]
    assert constraints == [sql_in(column, vocabulary)]
    assert constraints[0] == f"{column} IN ({', '.join(repr(member.value) for member in vocabulary)})"
