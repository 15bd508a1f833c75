"""The bench's database, tenant and request bodies."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson
from sqlalchemy.engine import make_url

from shared.credentials import hash_key, new_engine_key, new_inbound_token
from shared.migrate import upgrade_to_head
from shared.secret_box import secret_box_for
from shared.settings import normalize_database_url, plain_database_url

MAPPED_EVENT_NAMES = ("view_item", "add_to_cart", "purchase", "share", "review")
# SECRET_KEY of the bench's processes (it encrypts the stored inbound token and S2S secret).
BENCH_SECRET_KEY = "bench-secret-key-0123456789abcdef0123456789"


@dataclass
class BenchTenant:
    id: str
    engine_key: str
    inbound_token: str


def service_urls(var_dir: Path) -> tuple[str, str, object | None]:
    """(DATABASE_URL, REDIS_URL, embedded handle): the environment's servers, else embedded ones."""
    database_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if database_url and redis_url:
        return database_url, redis_url, None
    from shared.dev.embedded import EmbeddedServices

    services = EmbeddedServices(var_dir, redis_appendonly=False)
    services.start()
    return database_url or services.database_url, redis_url or services.redis_url, services


async def create_database(server_url: str) -> str:
    """A fresh, migrated database for this run; returns its SQLAlchemy URL."""
    base = normalize_database_url(server_url)
    name = f"lb_bench_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(plain_database_url(base))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade_to_head, url)
    return url


async def drop_database(database_url: str) -> None:
    url = make_url(database_url)
    admin = plain_database_url(url.set(database="postgres").render_as_string(hide_password=False))
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await connection.close()


async def forget_queue(redis_url: str, queue_name: str) -> None:
    """Delete every Redis key of this run's queue (work left queued would otherwise stay 7 days),
    the arq queue itself included (a sorted set named exactly `queue_name`)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        await redis.unlink(queue_name)
        for pattern in (f"{queue_name}:*", f"arq:*{queue_name}:*"):
            keys = [key async for key in redis.scan_iter(match=pattern, count=1000)]
            for start in range(0, len(keys), 1000):
                await redis.unlink(*keys[start : start + 1000])
    finally:
        await redis.aclose()


async def create_tenant(database_url: str, *, tenant_id: str, s2s_url: str) -> BenchTenant:
    """A connected tenant: 5 inbound mappings, auto-subscribe, one external event, two sync fields."""
    engine_key, token = new_engine_key(), new_inbound_token()
    box = secret_box_for(BENCH_SECRET_KEY)
    connection = await asyncpg.connect(plain_database_url(database_url))
    try:
        async with connection.transaction():
            await connection.execute(
                "INSERT INTO tenant (id, name, engine_key_hash, inbound_token_encrypted, inbound_token_hash)"
                " VALUES ($1, $2, $3, $4, $5)",
                tenant_id,
                f"Bench {tenant_id}",
                hash_key(engine_key),
                box.encrypt(token),
                box.token_hash(token),
            )
            await connection.execute(
                "INSERT INTO outbound_settings (tenant_id, api_url, api_key, api_secret_encrypted, development,"
                " sync_only_configured_identifiers, loyalty_identifier_field, customer_identifier_field)"
                " VALUES ($1, $2, 'bench-key', $3, false, false, 'id', 'customer_id')",
                tenant_id,
                s2s_url,
                box.encrypt("bench-secret"),
            )
            await connection.execute(
                "INSERT INTO inbound_settings (tenant_id, customer_identifier_field, loyalty_identifier_field,"
                " track_audience_data, auto_subscribe) VALUES ($1, 'customer', 'id', false, true)",
                tenant_id,
            )
            for position, name in enumerate(MAPPED_EVENT_NAMES):
                await connection.execute(
                    "INSERT INTO inbound_mapping (tenant_id, position, loyalty_event, event_type, event_name,"
                    " priority, attributes) VALUES ($1, $2, $3, 'custom_event', $4, $5, $6::jsonb)",
                    tenant_id,
                    position,
                    f"mp_{name}",
                    name,
                    position * 10,
                    orjson.dumps(
                        {"sku": "{sku}", "amount": "{amount}", "tier": "{batch.user_attributes.tier}"}
                    ).decode(),
                )
            await connection.execute(
                "INSERT INTO external_event (tenant_id, position, loyalty_event, event_name, custom_event_type,"
                " attributes) VALUES ($1, 0, 'point_add', 'points_added', 'transaction', $2::jsonb)",
                tenant_id,
                orjson.dumps({"points": "{points}", "reason": "{reason}"}).decode(),
            )
            for position, (loyalty, remote) in enumerate((("first_name", "$firstname"), ("tier", "tier"))):
                await connection.execute(
                    "INSERT INTO sync_field (tenant_id, position, loyalty_field, remote_field) VALUES ($1, $2, $3, $4)",
                    tenant_id,
                    position,
                    loyalty,
                    remote,
                )
    finally:
        await connection.close()
    return BenchTenant(tenant_id, engine_key, token)


def firehose_body(tenant: BenchTenant) -> str:
    """A 5-event event_processing_request (~1.4 KB) with wrk placeholders for id and send time."""
    events = [
        {
            "type": "custom_event",
            "id": f"evt-{index}",
            "timestamp_ms": "__NOW_MS__",
            "session_id": 4242,
            "name": name,
            "custom_event_type": "transaction",
            "attributes": {"sku": f"SKU-{index}", "amount": str(10 * (index + 1)), "channel": "app"},
        }
        for index, name in enumerate(MAPPED_EVENT_NAMES)
    ]
    message = {
        "type": "event_processing_request",
        "id": "__REQUEST_ID__",
        "timestamp_ms": 1714592744066,
        "firehose_version": "3.2.0",
        "source_id": "b5328100-69d6-46d6-8984-b9881beefbf5",
        "account": {
            "account_id": 123456,
            "account_settings": {"loyaltyEnvironment": tenant.id, "authenticationToken": tenant.inbound_token},
        },
        "mpid": "8675309",
        "user_identities": [
            {"type": "customer", "encoding": "raw", "value": "bench-customer-__N__"},
            {"type": "email", "encoding": "raw", "value": "customer-__N__@example.com"},
        ],
        "user_attributes": {"$FirstName": "Jane", "tier": "gold"},
        "runtime_environment": {"type": "ios", "sdk_version": "8.0.0", "os_version": "17.0"},
        "source_channel": "native",
        "events": events,
    }
    # timestamp_ms placeholders must become JSON numbers
    return orjson.dumps(message).decode().replace('"__NOW_MS__"', "__NOW_MS__")


def outbound_event_body() -> str:
    return orjson.dumps(
        {
            "customer": {"id": "bench-customer-__N__", "email": "customer-__N__@example.com", "tier": "gold"},
            "action": "point_add",
            "data": {"points": 25, "reason": "bench __REQUEST_ID__"},
        }
    ).decode()


def s2s_batch_body() -> str:
    return orjson.dumps(
        {
            "environment": "production",
            "source_request_id": "__REQUEST_ID__",
            "user_identities": {"customer_id": "bench-customer-__N__"},
            "events": [
                {
                    "event_type": "custom_event",
                    "data": {
                        "event_name": "points_added",
                        "custom_event_type": "transaction",
                        "source_message_id": "6f1f7a40-0000-4000-8000-000000000000",
                        "custom_attributes": {"points": 25},
                    },
                }
            ],
        }
    ).decode()
