"""Optional OpenTelemetry tracing (the `otel` extra) of the Firehose path, proxy to worker.

Enabled only when the extra is installed and OTEL_EXPORTER_OTLP_ENDPOINT is set (the standard
OTel variables configure the exporter: OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_HEADERS, ...).
Otherwise nothing of OpenTelemetry is imported and every function here is a cheap no-op.

The proxy opens a `firehose.receive` span per Firehose call and stores its W3C `traceparent` with
the queued request; the worker records a `firehose.apply` span, child of that one, when it applies
the request (one span per request, covering its batch's application), so both share one trace.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

TRACER_NAME = "loyalty_bridge"
OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_tracer: Tracer | None = None


def tracing_enabled() -> bool:
    """Whether spans are being recorded in this process."""
    return _tracer is not None


def configure_tracing_from_environment(service_name: str) -> bool:
    """Start tracing when the otel extra is installed and an OTLP endpoint is configured; True if so."""
    if not any(os.environ.get(name) for name in OTLP_ENDPOINT_VARIABLES):
        return False
    if not (_installed("opentelemetry.sdk") and _installed("opentelemetry.exporter.otlp.proto.http")):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    service = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    enable_tracing(provider)
    return True


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def enable_tracing(provider: TracerProvider) -> None:
    """Record spans with `provider` (tests pass one with an in-memory exporter)."""
    global _tracer
    _tracer = provider.get_tracer(TRACER_NAME)


def disable_tracing() -> None:
    global _tracer
    _tracer = None


@contextlib.contextmanager
def firehose_receive_span(message_type: str | None) -> Iterator[Any]:
    """The proxy's span around one Firehose call (a no-op without tracing)."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span("firehose.receive", attributes={"firehose.type": message_type or ""}) as span:
        yield span


def set_span_attributes(**attributes: str | int) -> None:
    """Add attributes to the current span, if any."""
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(attributes)


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to store with queued work; None without tracing."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def record_applied_spans(
    traceparents: Sequence[tuple[str | None, dict[str, str | int]]], *, started_ns: int, ended_ns: int
) -> None:
    """One `firehose.apply` span per applied request that carries a traceparent, continuing its
    trace, over the time its batch took (`started_ns`..`ended_ns`, epoch nanoseconds)."""
    if _tracer is None:
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    for traceparent, attributes in traceparents:
        if not traceparent:
            continue
        parent = propagator.extract({"traceparent": traceparent})
        span = _tracer.start_span("firehose.apply", context=parent, start_time=started_ns, attributes=attributes)
        span.end(end_time=ended_ns)
