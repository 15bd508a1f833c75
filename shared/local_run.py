"""`loyalty-bridge run`: embedded services when needed, migrate, then proxy + worker together."""

from __future__ import annotations

from shared.settings import Settings


def run_everything(settings: Settings) -> None:
    """Placeholder until the embedded runner lands (issue 2)."""
    raise RuntimeError("loyalty-bridge run is not implemented yet; run migrate, proxy and worker separately")
