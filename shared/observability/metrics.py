"""Every Prometheus metric of the bridge (names fixed in deploy/prometheus/METRICS.md).

Each process exports its own registry: PROXY_REGISTRY (proxy `/metrics`) and WORKER_REGISTRY (the
worker's METRICS_PORT); a metric both processes write (the error log) is in both. Labels take only
bounded values (message types, error codes, outcomes, priority bands, route templates): no tenant
ids, so the series count does not grow with the tenants.

Counters of database work are incremented when the transaction commits (count_after_commit), so a
rolled-back and retried transaction is not counted twice.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from shared.errors import ErrorCode, ErrorSource
from shared.vocabulary import OutboundStatus

PREFIX = "loyalty_bridge"
# Priority bands of the queue gauges: (label, lowest priority, highest priority).
PRIORITY_BANDS: tuple[tuple[str, int, int], ...] = (("0-99", 0, 99), ("100-499", 100, 499), ("500-1000", 500, 1000))
HTTP_DURATION_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The `type` label of a Firehose call whose type is missing or not one we know (bounded cardinality).
UNKNOWN_MESSAGE_TYPE = "unknown"


def _counter(name: str, documentation: str, *labels: str) -> Counter:
    """A counter named `loyalty_bridge_<name>`, registered by _registry (not in the default registry)."""
    return Counter(f"{PREFIX}_{name}", documentation, labels, registry=None)


def _gauge(name: str, documentation: str, *labels: str) -> Gauge:
    """A gauge named `loyalty_bridge_<name>`, registered by _registry (not in the default registry)."""
    return Gauge(f"{PREFIX}_{name}", documentation, labels, registry=None)


HTTP_REQUEST_DURATION = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Duration of each HTTP request, by route template.",
    ["route", "method", "status"],
    buckets=HTTP_DURATION_BUCKETS_SECONDS,
    registry=None,
)
FIREHOSE_REQUESTS = _counter(
    "firehose_requests", "Firehose calls by message type; outcome accepted, spooled or rejected.", "type", "outcome"
)
FIREHOSE_REJECTIONS = _counter(
    "firehose_rejections", "Rejected Firehose calls by the error code answered.", "type", "error_code"
)
OUTBOUND_ACCEPTED = _counter("outbound_accepted", "Outbound API calls accepted (202).")
SPOOL_SIZE = _gauge("spool_size", "Accepted Firehose requests held locally because Redis was unreachable.")

QUEUE_DEPTH = _gauge("queue_depth", "Pending inbound requests per priority band.", "priority")
QUEUE_OLDEST_AGE = _gauge(
    "queue_oldest_age_seconds", "Age of the oldest pending inbound request per priority band (0 when none).", "priority"
)
INBOUND_BATCHES_APPLIED = _counter("inbound_batches_applied", "Inbound batches processed and committed.")
INBOUND_REQUESTS_APPLIED = _counter("inbound_requests_applied", "Inbound Firehose requests processed.")
INBOUND_EVENTS_APPLIED = _counter("inbound_events_applied", "Ledger rows written.")
INBOUND_PROCESSING_FAILURES = _counter(
    "inbound_processing_failures", "Inbound batches whose processing failed (retried, or applied request by request)."
)
ECHO_EVENTS_DROPPED = _counter(
    "echo_events_dropped", "Inbound events dropped as echoes of the bridge's own outbound events."
)
OUTBOUND_DELIVERED = _counter("outbound_delivered", "Outbound messages delivered to mParticle.")
OUTBOUND_FAILED = _counter("outbound_failed", "Outbound messages failed for good.")
OUTBOUND_ATTEMPTS = _counter(
    "outbound_attempts",
    "S2S delivery attempts (HTTP requests); outcome 2xx, 4xx, 429, 5xx, timeout, connection_error.",
    "outcome",
)
OUTBOUND_RESEND_QUEUE_SIZE = _gauge("outbound_resend_queue_size", "Outbound messages waiting for a resend.")
ERROR_LOG_ENTRIES = _counter(
    "error_log_entries", "Incoming error log entries written, by source and error code.", "source", "code"
)

S2S_ATTEMPT_TIMEOUT = OUTBOUND_ATTEMPTS.labels(outcome="timeout")
S2S_ATTEMPT_CONNECTION_ERROR = OUTBOUND_ATTEMPTS.labels(outcome="connection_error")

_PROXY_METRICS: tuple[Collector, ...] = (
    HTTP_REQUEST_DURATION,
    FIREHOSE_REQUESTS,
    FIREHOSE_REJECTIONS,
    OUTBOUND_ACCEPTED,
    ERROR_LOG_ENTRIES,
)
_WORKER_METRICS: tuple[Collector, ...] = (
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    INBOUND_BATCHES_APPLIED,
    INBOUND_REQUESTS_APPLIED,
    INBOUND_EVENTS_APPLIED,
    INBOUND_PROCESSING_FAILURES,
    ECHO_EVENTS_DROPPED,
    OUTBOUND_DELIVERED,
    OUTBOUND_FAILED,
    OUTBOUND_ATTEMPTS,
    OUTBOUND_RESEND_QUEUE_SIZE,
    SPOOL_SIZE,
    ERROR_LOG_ENTRIES,
)


def _registry(metrics: tuple[Collector, ...]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    for metric in metrics:
        registry.register(metric)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


PROXY_REGISTRY = _registry(_PROXY_METRICS)
WORKER_REGISTRY = _registry(_WORKER_METRICS)

# Every band and outcome exported from the start (at 0), so dashboards and alerts see the series.
for _band, _, _ in PRIORITY_BANDS:
    QUEUE_DEPTH.labels(priority=_band)
    QUEUE_OLDEST_AGE.labels(priority=_band)
for _outcome in ("2xx", "4xx", "429", "5xx", "timeout", "connection_error"):
    OUTBOUND_ATTEMPTS.labels(outcome=_outcome)


def priority_band(priority: int) -> str:
    """The band label of a priority (0..1000)."""
    for label, lowest, highest in PRIORITY_BANDS:
        if lowest <= priority <= highest:
            return label
    raise ValueError(f"priority out of range: {priority}")


def s2s_status_outcome(status_code: int) -> str:
    """The `outcome` label of an S2S answer: 2xx, 429, 5xx, or 4xx for every other refusal."""
    if 200 <= status_code < 300:
        return "2xx"
    if status_code == 429:
        return "429"
    if status_code >= 500:
        return "5xx"
    return "4xx"


def record_s2s_status(status_code: int) -> None:
    """Count one S2S request that got an HTTP answer."""
    OUTBOUND_ATTEMPTS.labels(outcome=s2s_status_outcome(status_code)).inc()


def record_outbound_results(new_statuses: list[str]) -> None:
    """Count messages whose attempt results were just committed (delivered / failed for good)."""
    OUTBOUND_DELIVERED.inc(new_statuses.count(OutboundStatus.DELIVERED))
    OUTBOUND_FAILED.inc(new_statuses.count(OutboundStatus.FAILED))


def record_inbound_batch(*, requests: int, ledger_events: int, echo_events_dropped: int, failed_over: bool) -> None:
    """Count one committed inbound batch (`failed_over`: it was applied request by request after
    the batch as a whole failed)."""
    INBOUND_BATCHES_APPLIED.inc()
    INBOUND_REQUESTS_APPLIED.inc(requests)
    INBOUND_EVENTS_APPLIED.inc(ledger_events)
    ECHO_EVENTS_DROPPED.inc(echo_events_dropped)
    if failed_over:
        INBOUND_PROCESSING_FAILURES.inc()


class LabelledChildren:
    """The labelled children of one metric, kept by label values: `labels()` takes a lock and
    validates its arguments on every call, too much for a per-request path. The label values
    must be a bounded set (route templates, message types, error codes)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        """The child for these label values, in the metric's label order."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


_FIREHOSE_REQUESTS_BY_LABELS = LabelledChildren(FIREHOSE_REQUESTS)
_FIREHOSE_REJECTIONS_BY_LABELS = LabelledChildren(FIREHOSE_REJECTIONS)


def record_firehose_accepted(message_type: str) -> None:
    _FIREHOSE_REQUESTS_BY_LABELS(message_type, "accepted").inc()


def record_firehose_spooled(message_type: str) -> None:
    _FIREHOSE_REQUESTS_BY_LABELS(message_type, "spooled").inc()


def record_firehose_rejected(message_type: str | None, error_code: str) -> None:
    """Count a refused Firehose call; `message_type` must be a known type or None."""
    type_label = message_type or UNKNOWN_MESSAGE_TYPE
    _FIREHOSE_REQUESTS_BY_LABELS(type_label, "rejected").inc()
    _FIREHOSE_REJECTIONS_BY_LABELS(type_label, str(error_code)).inc()


# --- counting on commit -------------------------------------------------------------------------

_PENDING_KEY = "loyalty_bridge_metrics_on_commit"


def count_after_commit(session: AsyncSession | Session, counter: Any, amount: float = 1) -> None:
    """Increment `counter` (a Counter or a labelled child) by `amount` once `session` commits;
    forgotten if the transaction rolls back."""
    if amount <= 0:
        return
    sync_session = session.sync_session if isinstance(session, AsyncSession) else session
    sync_session.info.setdefault(_PENDING_KEY, []).append((counter, amount))


def count_error_log_entry(session: AsyncSession | Session, source: ErrorSource, code: ErrorCode) -> None:
    """Count one incoming error log entry when its transaction commits."""
    count_after_commit(session, ERROR_LOG_ENTRIES.labels(source=str(source), code=str(code)))


@event.listens_for(Session, "after_commit")
def _apply_pending(session: Session) -> None:
    for counter, amount in session.info.pop(_PENDING_KEY, ()):
        counter.inc(amount)


@event.listens_for(Session, "after_soft_rollback")
def _discard_pending(session: Session, previous_transaction: SessionTransaction) -> None:
    if not previous_transaction.nested:
        session.info.pop(_PENDING_KEY, None)
