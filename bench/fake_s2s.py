"""A minimal mParticle S2S stand-in for the bench: a bare ASGI app answering 202 at once and
counting the batches it received (GET /stats). The functional fake used by the tests, which
validates every batch against the schema, lives in tests/fakes/."""

from __future__ import annotations

import argparse
from typing import Any

import orjson
import uvicorn

_stats = {"requests": 0, "batches": 0}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] == "GET":
        payload = orjson.dumps(_stats)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})
        return
    _stats["requests"] += 1
    _stats["batches"] += body.count(b'"environment"')
    # Like S2S on a 2xx: the account's usage (none here), which the worker's pacing follows.
    headers = [(b"content-length", b"0"), (b"x-mp-rate-limit-percentage-used", b"0")]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning")


if __name__ == "__main__":
    main()
