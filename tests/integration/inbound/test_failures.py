"""Transient versus unexpected failures of inbound work: what is retried, what is reported (the
classifier itself: tests/unit/reliability/test_transient.py)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from shared.db import create_engine, create_sessionmaker
from shared.queues.firehose import FirehoseQueue
from shared.tenants.config import TenantConfigCache
from tests.factories import make_tenant
from tests.inbound_helpers import (
    AdminReader,
    custom_event,
    event_request,
    logged_errors,
    post_firehose,
    refresh_configs,
)
from worker.inbound.consumer import FirehoseConsumer


async def test_database_outage_is_waited_out_not_reported(
    app, client, settings, sessionmaker, admin_headers, drain_queue
) -> None:
    tenant = await make_tenant(
        sessionmaker,
        inbound={"auto_subscribe": True},
        inbound_mappings=[{"loyalty_event": "redeem", "event_type": "custom_event"}],
    )
    await refresh_configs(app)
    payload = event_request(tenant, custom_event("x"), customer="C-outage")
    assert (await post_firehose(client, payload)).status_code == 200

    # A consumer whose PostgreSQL refuses connections holds on to the batch and keeps retrying.
    unreachable = settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/none"})
    engine = create_engine(unreachable, application_name="tests-unreachable")
    redis = Redis.from_url(settings.require_redis_url())
    queue = FirehoseQueue(redis, settings.queue_name)
    member = queue.member(tenant.id, payload["id"])
    sessionmaker_down = create_sessionmaker(engine)
    consumer = FirehoseConsumer(queue, sessionmaker_down, TenantConfigCache(sessionmaker_down, 1))
    applying = asyncio.create_task(consumer.apply_next_batch())
    try:
        await asyncio.sleep(1.5)
        assert not applying.done(), "still retrying, not given up"
        assert await redis.zscore(queue.claimed_key, member) is not None, "the request is held, not dropped"
        applying.cancel()
        with pytest.raises(asyncio.CancelledError):
            await applying
        # Stopped: the batch went straight back to the queue with its priority.
        assert await redis.zscore(queue.pending_key, member) is not None
        assert await redis.zscore(queue.claimed_key, member) is None
    finally:
        await consumer.close()
        await redis.aclose()
        await engine.dispose()
    assert await logged_errors(sessionmaker, tenant.id) == []

    await drain_queue()  # PostgreSQL reachable: the request is applied
    ledger = await AdminReader(client, admin_headers, tenant.id).ledger("C-outage")
    assert [event["action"] for event in ledger] == ["redeem"]


async def test_a_message_invalid_beyond_its_envelope_is_logged_by_the_worker(
    app, client, sessionmaker, admin_headers, drain_queue
) -> None:
    """The proxy validates an event request's envelope and event heads; a field it does not read
    (here an event's timestamp) is checked by the worker: the request is logged INVALID_MESSAGE
    and skipped, and the rest of its batch is applied."""
    tenant = await make_tenant(
        sessionmaker,
        inbound={"auto_subscribe": True},
        inbound_mappings=[{"loyalty_event": "redeem", "event_type": "custom_event"}],
    )
    await refresh_configs(app)
    invalid = event_request(tenant, custom_event("x", timestamp_ms="yesterday"), customer="C-invalid")
    valid = event_request(tenant, custom_event("x"), customer="C-valid")
    assert (await post_firehose(client, invalid)).status_code == 200
    assert (await post_firehose(client, valid)).status_code == 200

    await drain_queue()

    entries = await logged_errors(sessionmaker, tenant.id)
    assert [(entry.source, entry.error_code, entry.request_id) for entry in entries] == [
        ("engine_request", "INVALID_MESSAGE", invalid["id"])
    ]
    assert "events.0.timestamp_ms" in entries[0].message
    reader = AdminReader(client, admin_headers, tenant.id)
    assert [customer["id"] for customer in await reader.customers()] == ["C-valid"]
    assert [event["action"] for event in await reader.ledger("C-valid")] == ["redeem"]
