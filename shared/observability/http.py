"""The proxy's request-duration middleware (pure ASGI, cheap) and its `/metrics` endpoint."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.observability.metrics import HTTP_REQUEST_DURATION, PROXY_REGISTRY, LabelledChildren

# The `route` label of a request no route matched (404s of arbitrary paths share one series).
UNMATCHED_ROUTE = "unmatched"
# The `route` label of a request served by a route without a template (Starlette's /docs).
OTHER_ROUTE = "other"


_REQUEST_DURATIONS = LabelledChildren(HTTP_REQUEST_DURATION)


def observe_request_duration(route: str, method: str, status_code: int, seconds: float) -> None:
    """One observation of loyalty_bridge_http_request_duration_seconds: by RequestDurationMiddleware,
    and by a route served ahead of it (the Firehose fast path)."""
    _REQUEST_DURATIONS(route, method, str(status_code)).observe(seconds)


class RequestDurationMiddleware:
    """Observes loyalty_bridge_http_request_duration_seconds{route,method,status} per request.

    `route` is the matched route's template (`/api/v1/tenants/{tenant_id}`), never the raw path,
    so tenant ids do not multiply the series. Pure ASGI (no BaseHTTPMiddleware): per request it
    costs two clock reads, a wrapped `send` and one histogram observation.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500  # what the client sees when the app fails before answering

        async def send_observed(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            observe_request_duration(route_template(scope), scope["method"], status_code, time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The template of the route that served the request, with its router prefix
    (`/api/v1/tenants/{tenant_id}`); `unmatched` when no route matched, `other` for a route
    without a template (Starlette's own, such as /docs)."""
    # FastAPI >= 0.130 matches included routers lazily: scope["route"] is then the route as
    # declared, without the include prefix, and the full template is on the effective context.
    context = scope.get("fastapi", {}).get("effective_route_context")
    path = getattr(context, "path", None)
    if isinstance(path, str) and path:
        return path
    route = scope.get("route")
    if route is None:
        return OTHER_ROUTE if "endpoint" in scope else UNMATCHED_ROUTE
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(path, str):
        return OTHER_ROUTE
    root_path = scope.get("root_path", "") or ""
    app_root = scope.get("app_root_path", "") or ""
    mount_prefix = root_path[len(app_root) :] if root_path.startswith(app_root) else ""
    return mount_prefix + path


def metrics_response(registry: CollectorRegistry) -> Response:
    """The registry in the Prometheus text format."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def proxy_metrics(request: Request) -> Response:
    """`GET /metrics` of the proxy (no authentication; no tenant data in any label)."""
    return metrics_response(PROXY_REGISTRY)
