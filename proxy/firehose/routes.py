"""`POST /mparticle/firehose`: the one URL mParticle calls for every Firehose message (CONTRACT §2)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.firehose.service import ENQUEUE_TIMEOUT_SECONDS, FirehoseCall, handle_firehose_call, now_ms
from proxy.openapi import FIREHOSE_PATH, error_responses
from proxy.request_body import receive_limited_body
from proxy.state import ProxyState
from shared.errors import BridgeError, PayloadTooLarge
from shared.inbound.responses import (
    AudienceMembershipChangeResponse,
    AudienceSubscriptionResponse,
    DsrProcessingResponse,
    EventProcessingResponse,
    ModuleRegistrationResponse,
)
from shared.observability.http import observe_request_duration
from shared.observability.metrics import record_firehose_rejected
from shared.queues.firehose import FirehoseQueue, GroupedEnqueuer

AnyFirehoseResponse = (
    ModuleRegistrationResponse
    | EventProcessingResponse
    | AudienceSubscriptionResponse
    | AudienceMembershipChangeResponse
    | DsrProcessingResponse
)

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": AnyFirehoseResponse, "description": "the typed response, `id` echoing the request's"},
    **error_responses(
        400,
        413,
        503,
        descriptions={
            400: "MALFORMED_JSON, INVALID_MESSAGE or UNKNOWN_MESSAGE_TYPE (not retried)",
            401: "missing/invalid token, unknown or disconnected tenant, bad caller token",
            413: "the body is larger than MAX_REQUEST_BYTES",
            503: "QUEUE_UNAVAILABLE: the work could not be enqueued (mParticle retries)",
        },
    ),
}


def create_enqueuer(state: ProxyState) -> GroupedEnqueuer:
    """The app's one Firehose enqueuer (it groups the round trips of concurrent requests): made
    and closed by the app's lifespan."""
    queue = FirehoseQueue(state.redis, state.settings.queue_name)
    return GroupedEnqueuer(queue, timeout_seconds=ENQUEUE_TIMEOUT_SECONDS)


def _call_headers(scope: Scope) -> tuple[str | None, str | None]:
    """(Content-Length, Authorization) read straight from the scope: building Starlette's Headers
    for two look-ups cost ~3 µs a request (py-spy)."""
    declared_length = authorization = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            declared_length = value.decode("latin-1")
        elif name == b"authorization":
            authorization = value.decode("latin-1")
    return declared_length, authorization


async def firehose_answer(scope: Scope, receive: Receive) -> bytes:
    """The encoded answer to one Firehose call; raises BridgeError (400/401/413/503). The body is
    read here rather than through FastAPI parameters, and the state read directly rather than
    through the StateDep dependency (a thread-pool hop): this is the hot path."""
    state: ProxyState = scope["app"].state.proxy
    declared_length, authorization = _call_headers(scope)
    try:
        body = await receive_limited_body(receive, declared_length, state.settings.max_request_bytes)
    except PayloadTooLarge as refused:  # its type is unknown: the body was not read
        record_firehose_rejected(None, refused.code)
        raise
    call = FirehoseCall(body, authorization, now_ms())
    # Encoded by the service: FastAPI's response_model path would validate the union once more.
    return await handle_firehose_call(state, scope["app"].state.firehose_enqueuer, call)


async def receive_firehose_message(request: Request) -> Response:
    """Dispatch on the message `type`. Registration needs no authentication; every other message
    is authenticated by its account settings and answered 200 only once its work is in the queue."""
    return Response(await firehose_answer(request.scope, request.receive), media_type="application/json")


class FirehoseRoute(APIRoute):
    """The Firehose route as declared and documented (OpenAPI), served by `serve_firehose_message`:
    the endpoint takes only the Request, so FastAPI's per-request dependency solving, exit stacks
    and wrappers would be pure overhead on the busiest URL (~60 µs a request, py-spy)."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = serve_firehose_message


_JSON_CONTENT_TYPE = (b"content-type", b"application/json")


async def serve_firehose_message(scope: Scope, receive: Receive, send: Send) -> None:
    """The route's ASGI app (FirehoseFastPath serves the same without it)."""
    await _serve(scope, receive, send)


async def _serve(scope: Scope, receive: Receive, send: Send) -> int:
    """Answer one call; returns the status sent. The answer goes as two ASGI messages (what
    Response would send, without building one); a rejection is rendered by the app's own
    BridgeError handler."""
    try:
        answer = await firehose_answer(scope, receive)
    except BridgeError as error:
        request = Request(scope, receive, send)
        response = await request.app.exception_handlers[BridgeError](request, error)
        await response(scope, receive, send)
        status_code: int = response.status_code
        return status_code
    headers = [(b"content-length", str(len(answer)).encode()), _JSON_CONTENT_TYPE]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})
    return 200


class FirehoseFastPath:
    """Pure ASGI middleware serving `POST /mparticle/firehose` ahead of the app's other middleware
    and its router (~30 µs a request, py-spy), and observing its request duration itself (the
    metrics middleware's `send` wrapper and route look-up cost ~5 µs more); every other request
    goes on to the app. An unexpected exception still reaches ServerErrorMiddleware (the app's
    JSON 500), counted here as a 500."""

    def __init__(self, app: ASGIApp, route: FirehoseRoute) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == FIREHOSE_PATH and scope["method"] == "POST":
            scope["route"] = self.route
            started = time.perf_counter()
            status_code = 500
            try:
                status_code = await _serve(scope, receive, send)
            finally:
                observe_request_duration(FIREHOSE_PATH, "POST", status_code, time.perf_counter() - started)
        else:
            await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    """Declare the Firehose route on the app itself (documented; a route of an included router is
    matched by walking the router tree, ~50 µs) and serve it through FirehoseFastPath. Call after
    adding the other middleware, so that the fast path is the outermost."""
    app.router.add_api_route(
        FIREHOSE_PATH,
        receive_firehose_message,
        methods=["POST"],
        response_model=None,
        tags=["mparticle"],
        summary="mParticle Firehose endpoint (registration, events, audiences, DSR)",
        responses=RESPONSES,
        route_class_override=FirehoseRoute,
    )
    route = app.router.routes[-1]
    assert isinstance(route, FirehoseRoute)
    app.add_middleware(FirehoseFastPath, route=route)
