"""The bench's figures: one row per measure (value, the ceiling taken in the same run, target)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    name: str
    value: float
    unit: str
    ceiling: float | None = None
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        return self.value / self.ceiling if self.ceiling else None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Extra tables printed after the main one (the scaling table), in markdown.
    tables: list[str] = field(default_factory=list)
    # Their figures, written to the JSON output under their name.
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.name}: {row.value:,.1f} {row.unit}" + (f" (ceiling {row.ceiling:,.1f})" if row.ceiling else ""))

    def table(self) -> str:
        header = f"| {'measure':<56} | {'value':>12} | {'ceiling':>12} | {'ratio':>6} | {'target':<22} | met |"
        lines = [header, "|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|"]
        for row in self.rows:
            ceiling = f"{row.ceiling:,.0f}" if row.ceiling else ""
            ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
            met = "" if row.met is None else ("yes" if row.met else "NO")
            lines.append(
                f"| {row.name:<56} | {row.value:>12,.1f} | {ceiling:>12} | {ratio:>6} | {row.target:<22} | {met:<3} |"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class Profile:
    """How long each load runs, and with how many connections (wrk)."""

    saturation_seconds: float
    latency_seconds: float
    e2e_seconds: float
    outbound_seconds: float
    scaling_seconds: float
    connections: int


FULL = Profile(
    saturation_seconds=10,
    latency_seconds=10,
    e2e_seconds=15,
    outbound_seconds=10,
    scaling_seconds=8,
    connections=32,
)
SMOKE = Profile(
    saturation_seconds=1,
    latency_seconds=1,
    e2e_seconds=2,
    outbound_seconds=1,
    scaling_seconds=1,
    connections=4,
)
