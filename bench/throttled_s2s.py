"""A throttling mParticle S2S stand-in for the bench's outbound pacing phase: a bare ASGI app that
accepts at most `--limit` batches per second per process (all accounts together), like an account
limit (reference/notes/s2s.md §2), and counts what it saw (GET /stats).

The limit is a token bucket of one second's worth of batches, refilled continuously. A request
whose batches fit is answered 202; one that does not is answered 429 with `Retry-After` (whole
seconds, at least 1) and `X-mp-rate-limit-exceeded: account`. Every answer carries
`X-mp-rate-limit-percentage-used`: how much of the bucket is used up (0 when full, 100 when
empty). That reading of mParticle's header is an assumption: its docs say only that it reports the
highest usage among the limits that apply.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import orjson
import uvicorn


class ThrottledS2S:
    """The ASGI app: a token bucket of `limit_per_second` batches, and counters."""

    def __init__(self, limit_per_second: float) -> None:
        self.limit_per_second = limit_per_second
        self.capacity = limit_per_second
        self.tokens = limit_per_second
        self.refilled_at = time.monotonic()
        self.stats: dict[str, Any] = {
            "requests": 0,
            "throttled_requests": 0,
            "accepted_batches": 0,
            "first_accepted_at": None,
            "last_accepted_at": None,
        }

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.refilled_at) * self.limit_per_second)
        self.refilled_at = now

    def _percent_used(self) -> str:
        return str(round(max(0.0, 100.0 * (1.0 - self.tokens / self.capacity))))

    def answer(self, batches: int) -> tuple[int, list[tuple[bytes, bytes]]]:
        """The status and headers for a request carrying `batches` batches."""
        now = time.monotonic()
        self._refill(now)
        self.stats["requests"] += 1
        if batches <= self.tokens:
            self.tokens -= batches
            self.stats["accepted_batches"] += batches
            self.stats["first_accepted_at"] = self.stats["first_accepted_at"] or now
            self.stats["last_accepted_at"] = now
            return 202, [(b"x-mp-rate-limit-percentage-used", self._percent_used().encode())]
        self.stats["throttled_requests"] += 1
        retry_after = max(1, math.ceil((batches - self.tokens) / self.limit_per_second))
        return 429, [
            (b"retry-after", str(retry_after).encode()),
            (b"x-mp-rate-limit-exceeded", b"account"),
            (b"x-mp-rate-limit-percentage-used", b"100"),
        ]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET":
            payload = orjson.dumps(self.stats)
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        status, headers = self.answer(max(body.count(b'"environment"'), 1))
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0"), *headers]})
        await send({"type": "http.response.body", "body": b""})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--limit", type=float, required=True, help="batches per second")
    args = parser.parse_args()
    app = ThrottledS2S(args.limit)
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning")


if __name__ == "__main__":
    main()
