"""Hypothesis-generated Firehose messages built from mParticle's own message shapes
(tests/data/firehose): a real sample of each type, authenticated for a real tenant, then changed
at random (a value replaced by any JSON, NUL characters, huge or deep values, fields dropped).

Whatever arrives, the proxy answers 200 with the typed response echoing the request's `id`, or a
clear 4xx in the error envelope; never a 5xx, and the process keeps answering. Bounded and
derandomized (MAX_EXAMPLES) so CI is stable.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.settings import Settings
from tests.factories import TenantFixture
from tests.inbound_helpers import FIREHOSE_PATH, sample

MAX_EXAMPLES = 300
SAMPLE_NAMES = (
    "ModuleRegistrationRequest.json",
    "EventProcessingRequest_ios.json",
    "EventProcessingRequest_android.json",
    "AudienceSubscriptionRequest.json",
    "AudienceMembershipChangeRequest.json",
    "DsrProcessingRequest.json",
)
CLEAR_REFUSALS = {400: {"MALFORMED_JSON", "INVALID_MESSAGE", "UNKNOWN_MESSAGE_TYPE"}, 401: None, 413: None}

# Any JSON value, with the awkward ones on purpose: NUL and other control characters, numbers
# beyond 64 bits, deep nesting.
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["\x00", "a\x00b", "\u2028", "", " "]
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside `value` (dict keys and list indexes)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def _parent(message: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = message
    for step in path[:-1]:
        node = node[step]
    return node


@st.composite
def firehose_messages(draw: st.DrawFn, tenant: TenantFixture) -> dict[str, Any]:
    """A real sample for `tenant`, with up to three random changes."""
    message = sample(draw(st.sampled_from(SAMPLE_NAMES)), tenant)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        paths = list(_paths(message))
        path = draw(st.sampled_from(paths))
        parent = _parent(message, path)
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_json_values)
    if draw(st.booleans()):
        message["id"] = str(uuid.uuid4())  # a fresh request, not a retry of an earlier one
    return message


Post = Callable[[bytes], httpx.Response]


async def _lifespan_of(app: Any) -> LifespanManager:
    return LifespanManager(app)


@pytest.fixture
def post_firehose(settings: Settings) -> Iterator[Post]:
    """POST a body to the proxy app, in process: the app and its lifespan run on an event loop of
    their own (a blocking portal), so hypothesis drives it from plain, synchronous code."""
    from proxy.app import create_app

    app = create_app(settings)
    with start_blocking_portal() as portal:
        lifespan = portal.call(_lifespan_of, app)  # made on the portal's loop, where it runs
        portal.call(lifespan.__aenter__)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy")
        try:
            yield lambda body: portal.call(functools.partial(client.post, FIREHOSE_PATH, content=body))
        finally:
            portal.call(client.aclose)
            portal.call(lifespan.__aexit__, None, None, None)


@pytest.fixture
async def fuzz_tenant(sessionmaker) -> TenantFixture:
    from tests.factories import make_tenant

    return await make_tenant(sessionmaker, inbound={"auto_subscribe": True, "track_audience_data": True})


def test_generated_firehose_messages_get_a_typed_answer_or_a_clear_4xx(
    post_firehose: Post, fuzz_tenant: TenantFixture
) -> None:
    seen: dict[int, int] = {}

    @given(message=firehose_messages(fuzz_tenant))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(message: dict[str, Any]) -> None:
        # json, not orjson: it writes integers beyond 64 bits, as a careless sender would.
        response = post_firehose(json.dumps(message).encode())
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        body = response.json()
        if response.status_code == 200:
            expected_type = str(message["type"]).replace("_request", "_response")
            assert (body["type"], body["id"]) == (expected_type, message["id"]), body
            assert isinstance(body["timestamp_ms"], int) and body["firehose_version"]
            return
        assert response.status_code in CLEAR_REFUSALS, (response.status_code, body)
        assert set(body) == {"error"} and body["error"]["message"], body
        codes = CLEAR_REFUSALS[response.status_code]
        assert codes is None or body["error"]["code"] in codes, body

    run()
    # The run covered both outcomes, and the proxy still answers a plain registration.
    assert seen.get(200) and sum(count for status, count in seen.items() if status != 200), seen
    registration = post_firehose(json.dumps(sample("ModuleRegistrationRequest.json")).encode())
    assert registration.status_code == 200
