"""Secrets at rest: PostgreSQL holds no plaintext S2S secret or inbound token; SECRET_KEY rotation
(`loyalty-bridge rotate-secrets`), a wrong key, and the data migration that encrypts existing rows."""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic import command
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from sqlalchemy import select

from shared.db import create_engine, create_sessionmaker
from shared.migrate import alembic_config, upgrade_to_head
from shared.models import OutboundSettings, Tenant
from shared.secret_box import SecretBox, secret_box_for
from shared.settings import Settings, plain_database_url
from shared.tenants.repository import TenantRepository
from shared.tenants.secrets_rotation import rotate_secrets
from tests.conftest import SECRET_KEY
from tests.integration.admin_helpers import OUTBOUND_BODY, connect_tenant, create_tenant
from tests.scratch_database import scratch_database

OLD_KEY = "rotation-old-key-" + "o" * 32
NEW_KEY = "rotation-new-key-" + "n" * 32
ROOT = Path(__file__).resolve().parents[3]
SECRETS_MIGRATION = importlib.import_module("migrations.versions.0008_security_secrets_at_rest")


async def _raw_rows(database_url: str, tenant_id: str) -> str:
    """Every column of the tenant's tenant and outbound_settings rows, as PostgreSQL stores them."""
    connection = await asyncpg.connect(plain_database_url(database_url))
    try:
        rows = [
            await connection.fetchval("SELECT row_to_json(t)::text FROM tenant t WHERE id = $1", tenant_id),
            await connection.fetchval(
                "SELECT row_to_json(o)::text FROM outbound_settings o WHERE tenant_id = $1", tenant_id
            ),
        ]
    finally:
        await connection.close()
    assert all(rows)
    return "\n".join(rows)


async def test_rows_hold_neither_the_s2s_secret_nor_the_inbound_token(client, admin_headers, settings) -> None:
    tenant = await create_tenant(client, admin_headers)
    await connect_tenant(client, admin_headers, tenant["id"])
    token = (await client.get(f"/api/v1/tenants/{tenant['id']}/inbound-settings", headers=admin_headers)).json()[
        "authentication_token"
    ]

    stored = await _raw_rows(settings.require_database_url(), tenant["id"])

    assert token.startswith("lbt_")
    assert OUTBOUND_BODY["api_secret"] not in stored
    assert token not in stored
    assert token.removeprefix("lbt_") not in stored


async def test_a_wrong_secret_key_is_a_clear_error_not_a_leak(client, admin_headers, settings) -> None:
    tenant = await create_tenant(client, admin_headers)
    await connect_tenant(client, admin_headers, tenant["id"])
    other = create_app_with(settings, "a-completely-different-secret-key-0123456789")

    async with LifespanManager(other), _client(other) as wrong:
        response = await wrong.get(f"/api/v1/tenants/{tenant['id']}/inbound-settings", headers=admin_headers)

    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "SECRET_UNREADABLE"
    assert "keep the previous key in SECRET_KEY" in error["message"]


def create_app_with(settings: Settings, secret_key: str):
    from proxy.app import create_app

    return create_app(settings.model_copy(update={"secret_key": SecretStr(secret_key)}))


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy")


@pytest.fixture
async def rotation_database(service_urls: tuple[str, str]) -> AsyncIterator[str]:
    """A database of its own: rotate-secrets rewrites every tenant it finds."""
    async with scratch_database(service_urls[0], "lb_rotation") as url:
        yield url


async def _connected_tenant(database_url: str, secret_key: str, tenant_id: str) -> str:
    """A tenant saved with `secret_key` (as the admin API does); returns its inbound token."""
    settings = Settings(database_url=database_url, secret_key=secret_key)
    engine = create_engine(settings, application_name="tests")
    try:
        async with create_sessionmaker(engine)() as session:
            repository = TenantRepository(session, settings)
            await repository.create_tenant(tenant_id, "Rotation")
            await repository.save_outbound_settings(
                tenant_id,
                api_url="https://s2s.mparticle.com",
                api_key="key",
                api_secret="the-s2s-secret",
                development=False,
                sync_only_configured_identifiers=False,
                loyalty_identifier_field="id",
                customer_identifier_field="customer_id",
            )
            token = (await repository.get_inbound_settings(tenant_id)).authentication_token
            await session.commit()
    finally:
        await engine.dispose()
    assert token is not None
    return token


async def _stored(database_url: str, tenant_id: str) -> tuple[str, str, str]:
    engine = create_engine(Settings(database_url=database_url), application_name="tests")
    try:
        async with create_sessionmaker(engine)() as session:
            token_encrypted, token_hash = (
                await session.execute(
                    select(Tenant.inbound_token_encrypted, Tenant.inbound_token_hash).where(Tenant.id == tenant_id)
                )
            ).one()
            secret = await session.scalar(
                select(OutboundSettings.api_secret_encrypted).where(OutboundSettings.tenant_id == tenant_id)
            )
    finally:
        await engine.dispose()
    return token_encrypted, token_hash, secret


async def test_rotation_with_two_keys(rotation_database: str) -> None:
    token = await _connected_tenant(rotation_database, OLD_KEY, "rotating")
    rotating = SecretBox([NEW_KEY, OLD_KEY])
    token_encrypted, token_hash, secret = await _stored(rotation_database, "rotating")
    # New key in front, nothing rotated yet: everything still reads and authenticates.
    assert rotating.decrypt(secret) == "the-s2s-secret"
    assert rotating.token_matches(token, token_hash)

    engine = create_engine(Settings(database_url=rotation_database), application_name="tests")
    try:
        first = await rotate_secrets(create_sessionmaker(engine), rotating)
        again = await rotate_secrets(create_sessionmaker(engine), rotating)
    finally:
        await engine.dispose()

    assert (first.tenants_checked, first.tokens_rotated, first.api_secrets_rotated) == (1, 1, 1)
    assert (again.tokens_rotated, again.api_secrets_rotated) == (0, 0)
    new_only = SecretBox([NEW_KEY])
    token_encrypted, token_hash, secret = await _stored(rotation_database, "rotating")
    assert new_only.decrypt(secret) == "the-s2s-secret"
    assert new_only.decrypt(token_encrypted) == token
    assert new_only.token_matches(token, token_hash)  # the old key can go


def _cli(arguments: list[str], **environment: str) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *arguments],
        env={**base, **environment},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_rotate_secrets_command(rotation_database: str) -> None:
    await _connected_tenant(rotation_database, OLD_KEY, "cli-rotation")

    wrong = await asyncio.to_thread(_cli, ["rotate-secrets"], DATABASE_URL=rotation_database, SECRET_KEY=NEW_KEY)
    done = await asyncio.to_thread(
        _cli, ["rotate-secrets"], DATABASE_URL=rotation_database, SECRET_KEY=f"{NEW_KEY},{OLD_KEY}"
    )

    assert wrong.returncode == 2, wrong.stderr
    assert "tenant 'cli-rotation'" in wrong.stderr and "cannot be decrypted" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 1 inbound tokens and 1 S2S secrets" in done.stdout
    assert "older keys may now be removed" in done.stdout
    _, _, secret = await _stored(rotation_database, "cli-rotation")
    assert SecretBox([NEW_KEY]).decrypt(secret) == "the-s2s-secret"


@pytest.fixture
async def pre_encryption_database(service_urls: tuple[str, str]) -> AsyncIterator[str]:
    """A database migrated to just before the secrets-at-rest migration, with one plaintext tenant."""
    async with scratch_database(service_urls[0], "lb_secrets_migration", migrate=False) as url:
        await asyncio.to_thread(command.upgrade, alembic_config(url), SECRETS_MIGRATION.down_revision)
        connection = await asyncpg.connect(plain_database_url(url))
        try:
            await connection.execute(
                "INSERT INTO tenant (id, name, engine_key_hash, inbound_token) VALUES ('old', 'Old', $1, $2)",
                "0" * 64,
                "lbt_plaintext-token",
            )
            await connection.execute(
                "INSERT INTO outbound_settings (tenant_id, api_url, api_key, api_secret, development,"
                " sync_only_configured_identifiers, loyalty_identifier_field, customer_identifier_field)"
                " VALUES ('old', 'https://s2s.mparticle.com', 'k', 'plaintext-secret', false, false, 'id',"
                " 'customer_id')"
            )
        finally:
            await connection.close()
        yield url


async def test_the_migration_encrypts_existing_rows_and_needs_the_key(
    pre_encryption_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="2 stored secrets must be converted and SECRET_KEY is not usable"):
        await asyncio.to_thread(upgrade_to_head, pre_encryption_database)

    await asyncio.to_thread(upgrade_to_head, pre_encryption_database, SecretStr(SECRET_KEY))

    box = secret_box_for(SECRET_KEY)
    token_encrypted, token_hash, secret = await _stored(pre_encryption_database, "old")
    assert box.decrypt(token_encrypted) == "lbt_plaintext-token"
    assert box.token_matches("lbt_plaintext-token", token_hash)
    assert box.decrypt(secret) == "plaintext-secret"
    stored = await _raw_rows(pre_encryption_database, "old")
    assert "plaintext-token" not in stored and "plaintext-secret" not in stored
