"""Metrics (Prometheus), structured logs and optional tracing (OpenTelemetry) of both processes.

Metric names are fixed in deploy/prometheus/METRICS.md; docs/observability.md describes all three.
"""
