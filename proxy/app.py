"""The proxy application: create_app(settings) wires routers, handlers and process resources."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from proxy import health
from proxy.admin import router as admin_router
from proxy.console import router as console_router
from proxy.exception_handlers import install_exception_handlers
from proxy.firehose import routes as firehose
from proxy.firehose.tokens import InboundTokenCheck
from proxy.openapi import install_openapi
from proxy.outbound import routes as outbound
from proxy.outbound.delivery_kicker import DeliveryKicker
from proxy.outbound.outbox_writer import OutboxWriter
from proxy.request_body import DeclaredBodyLimit
from proxy.state import ProxyState
from shared.db import create_engine, create_sessionmaker
from shared.errorlog.deferred import DeferredErrorLog
from shared.observability.http import RequestDurationMiddleware, proxy_metrics
from shared.observability.tracing import configure_tracing_from_environment
from shared.queues.jobs import JobQueue, create_redis
from shared.settings import Settings
from shared.tenants.config import TenantConfigCache

REDIS_SOCKET_TIMEOUT_SECONDS = 2.0
NATIVE_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

DESCRIPTION = """
Loyalty Bridge proxy: the mParticle Firehose endpoint, the loyalty engine's outbound API and the
operators' admin API. Admin routes take `Authorization: Bearer <ADMIN_API_KEY>`; outbound routes
take the tenant's engine key.
"""


def create_app(settings: Settings) -> FastAPI:
    """Build the proxy app; resources are created in the lifespan, not at import time."""
    settings.require_admin_api_key()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings, application_name="loyalty-bridge-proxy")
        sessionmaker = create_sessionmaker(engine)
        redis = create_redis(
            settings,
            connect_timeout_seconds=REDIS_SOCKET_TIMEOUT_SECONDS,
            socket_timeout_seconds=REDIS_SOCKET_TIMEOUT_SECONDS,
        )
        tenant_configs = TenantConfigCache(sessionmaker, settings.config_cache_seconds)
        await tenant_configs.start()
        queue = JobQueue(redis, settings.queue_name)
        delivery_kicker = DeliveryKicker(queue)
        outbox = OutboxWriter(engine, on_stored=delivery_kicker.kick)
        deferred_error_log = DeferredErrorLog(sessionmaker)
        deferred_error_log.start()
        delivery_kicker.start()
        outbox.start()
        app.state.proxy = ProxyState(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            redis=redis,
            queue=queue,
            tenant_configs=tenant_configs,
            outbox=outbox,
            delivery_kicker=delivery_kicker,
            deferred_error_log=deferred_error_log,
            inbound_tokens=InboundTokenCheck(settings.secret_box()),
        )
        firehose_enqueuer = app.state.firehose_enqueuer = firehose.create_enqueuer(app.state.proxy)
        # Everything built so far (modules, routes, models, pools) lives as long as the app: keep
        # it out of the cyclic GC's scans. Without this every full collection walked the whole
        # start-up heap (~100 ms each, about one a second at full load: the p99 of the outbound
        # API went from ~100 ms to ~20 ms). Unfrozen at shutdown (tests start many apps).
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            await firehose_enqueuer.close()
            await deferred_error_log.stop()
            await outbox.stop()
            await delivery_kicker.stop()
            await tenant_configs.stop()
            await redis.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Loyalty Bridge",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry instrumentation stays off: the bridge traces with its own
        # tracer (shared.observability.tracing), and the check alone cost ~20 µs a request (py-spy).
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    install_exception_handlers(app)
    install_openapi(app)
    # Middleware order, innermost first: the body limit, the metrics, then the Firehose fast path
    # (outermost of ours: Firehose requests skip the others; it times them itself).
    app.add_middleware(DeclaredBodyLimit)
    app.add_middleware(RequestDurationMiddleware)
    firehose.install(app)
    if settings.enable_bench_routes:  # before the other routers: it measures the app, not the route table
        from proxy import bench_routes

        app.include_router(bench_routes.router)
    configure_tracing_from_environment("loyalty-bridge-proxy")
    app.include_router(health.router)
    app.include_router(outbound.router, prefix="/api/v1")
    app.include_router(admin_router, prefix="/api/v1")
    app.include_router(console_router)
    app.add_route("/metrics", proxy_metrics, methods=["GET"], include_in_schema=False)
    return app
