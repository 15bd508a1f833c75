"""Tracing (the otel extra): a Firehose call and its later application by the worker share one
trace, through the traceparent stored with the queued request. Spans go to the SDK's in-memory
exporter; the proxy runs in-process, the worker is a burst worker on the same queue."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.observability.tracing import disable_tracing, enable_tracing, tracing_enabled
from shared.queues.firehose import FirehoseQueue, job_traceparent
from shared.settings import Settings
from tests.factories import make_tenant
from tests.inbound_helpers import custom_event, event_request, post_firehose, refresh_configs

PURCHASE_MAPPING = {"loyalty_event": "purchase", "event_type": "custom_event", "event_name": "Purchase", "priority": 10}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable_tracing(provider)
    yield exporter
    disable_tracing()
    provider.shutdown()


async def _pending_traceparents(settings: Settings) -> list[str | None]:
    redis = Redis.from_url(settings.require_redis_url())
    try:
        queue = FirehoseQueue(redis, settings.queue_name)
        members = await redis.zrange(queue.pending_key, 0, -1)
        values = [await redis.get(queue.job_prefix + member.decode()) for member in members]
    finally:
        await redis.aclose()
    return [job_traceparent(value.decode()) for value in values if value is not None]


async def test_firehose_call_and_its_application_share_one_trace(
    spans: InMemorySpanExporter,
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    drain_queue: Callable[[], Coroutine[Any, Any, None]],
) -> None:
    tenant = await make_tenant(sessionmaker, inbound={"auto_subscribe": True}, inbound_mappings=[PURCHASE_MAPPING])
    await refresh_configs(app)
    request = event_request(tenant, custom_event("Purchase"), customer="C-trace")
    assert (await post_firehose(client, request)).status_code == 200

    [received] = spans.get_finished_spans()
    assert received.name == "firehose.receive"
    context = received.get_span_context()
    assert context is not None
    [stored] = await _pending_traceparents(settings)
    assert stored is not None and stored.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")

    await drain_queue()
    applied = [span for span in spans.get_finished_spans() if span.name == "firehose.apply"]
    assert len(applied) == 1
    applied_context = applied[0].get_span_context()
    assert applied_context is not None and applied_context.trace_id == context.trace_id
    assert applied[0].parent is not None and applied[0].parent.span_id == context.span_id
    assert applied[0].attributes == {"tenant.id": tenant.id, "firehose.request_id": request["id"]}


async def test_without_tracing_nothing_is_stored_or_recorded(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    assert not tracing_enabled()
    tenant = await make_tenant(sessionmaker, inbound_mappings=[PURCHASE_MAPPING])
    await refresh_configs(app)
    request = event_request(tenant, custom_event("Purchase"), customer="C-trace")
    assert (await post_firehose(client, request)).status_code == 200
    assert await _pending_traceparents(settings) == [None]
