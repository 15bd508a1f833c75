"""Fuzz fixtures: the proxy app (its lifespan run by schemathesis, in its own thread) and two
connected tenants whose engine keys the fuzzed calls carry."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI

from shared.settings import Settings
from tests.factories import TenantFixture, make_tenant


@dataclass(frozen=True)
class FuzzTenants:
    """Tenant `a` (whose key the fuzzer uses) and tenant `b` (whose data `a`'s key must never reach)."""

    a: TenantFixture
    b: TenantFixture


@pytest.fixture
async def fuzz_tenants(sessionmaker) -> FuzzTenants:
    a, b = await make_tenant(sessionmaker), await make_tenant(sessionmaker)
    return FuzzTenants(a, b)


@pytest.fixture
def fuzz_app(settings: Settings) -> Iterator[FastAPI]:
    """The proxy app, not started: schemathesis runs its lifespan in its own event loop thread."""
    from schemathesis.python.asgi import shutdown_lifespans

    from proxy.app import create_app

    yield create_app(settings)
    shutdown_lifespans()
