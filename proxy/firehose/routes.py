"""`POST /mparticle/firehose`: the one URL mParticle calls for every Firehose message (CONTRACT §2)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.firehose.service import ENQUEUE_TIMEOUT_SECONDS, FirehoseCall, handle_firehose_call, now_ms
from proxy.openapi import FIREHOSE_PATH, error_responses
from proxy.request_body import read_limited_body
from proxy.state import ProxyState
from shared.errors import BridgeError, PayloadTooLarge
from shared.inbound.responses import (
    AudienceMembershipChangeResponse,
    AudienceSubscriptionResponse,
    DsrProcessingResponse,
    EventProcessingResponse,
    ModuleRegistrationResponse,
    encode_response,
)
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


def _state(request: Request) -> ProxyState:
    # Read directly rather than through the sync StateDep/SettingsDep dependencies: FastAPI runs
    # sync dependencies in a thread pool, a hop that costs more than the rest of this route's work.
    state: ProxyState = request.app.state.proxy
    return state


def create_enqueuer(state: ProxyState) -> GroupedEnqueuer:
    """The app's one Firehose enqueuer (it groups the round trips of concurrent requests): made
    and closed by the app's lifespan."""
    queue = FirehoseQueue(state.redis, state.settings.queue_name)
    return GroupedEnqueuer(queue, timeout_seconds=ENQUEUE_TIMEOUT_SECONDS)


def _enqueuer(request: Request) -> GroupedEnqueuer:
    enqueuer: GroupedEnqueuer = request.app.state.firehose_enqueuer
    return enqueuer


async def read_firehose_call(request: Request) -> FirehoseCall:
    """The call as received; the body is refused with 413 beyond MAX_REQUEST_BYTES."""
    try:
        body = await read_limited_body(request, _state(request).settings.max_request_bytes)
    except PayloadTooLarge as refused:  # its type is unknown: the body was not read
        record_firehose_rejected(None, refused.code)
        raise
    return FirehoseCall(body, request.headers.get("authorization"), now_ms())


async def receive_firehose_message(request: Request) -> Response:
    """Dispatch on the message `type`. Registration needs no authentication; every other message
    is authenticated by its account settings and answered 200 only once its work is in the queue.
    The body is read here rather than through FastAPI parameters: this is the hot path."""
    response = await handle_firehose_call(_state(request), _enqueuer(request), await read_firehose_call(request))
    # Rendered here: FastAPI's response_model path would validate the union once more per request.
    return Response(encode_response(response), media_type="application/json")


class FirehoseRoute(APIRoute):
    """The Firehose route as declared and documented (OpenAPI), served by `serve_firehose_message`:
    the endpoint takes only the Request, so FastAPI's per-request dependency solving, exit stacks
    and wrappers would be pure overhead on the busiest URL (~60 µs a request, py-spy)."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = serve_firehose_message


async def serve_firehose_message(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive, send)
    try:
        response = await receive_firehose_message(request)
    except BridgeError as error:  # the app's own handler renders it, as for every other route
        response = await request.app.exception_handlers[BridgeError](request, error)
    await response(scope, receive, send)


class FirehoseFastPath:
    """Pure ASGI middleware serving `POST /mparticle/firehose` before the app's middleware stack
    and router (~30 µs a request, py-spy); every other request goes on to the app. Installed inside
    the metrics middleware, which labels the request with the route it finds in the scope. An
    unexpected exception still reaches ServerErrorMiddleware (the JSON 500 of the app)."""

    def __init__(self, app: ASGIApp, route: FirehoseRoute) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == FIREHOSE_PATH and scope["method"] == "POST":
            scope["route"] = self.route
            await serve_firehose_message(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    """Declare the Firehose route on the app itself (documented; a route of an included router is
    matched by walking the router tree, ~50 µs) and serve it through FirehoseFastPath. Call before
    adding the metrics middleware, so that it stays outermost and times Firehose requests too."""
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
