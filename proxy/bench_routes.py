"""The benchmark's ceiling: the same server, the same body, a route that only parses the JSON.

Mounted only with ENABLE_BENCH_ROUTES=true (see `make bench`); never in production.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response

router = APIRouter(include_in_schema=False)

_OK_BODY = b'{"ok":true}'


@router.post("/bench/parse-only")
async def parse_only(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(_OK_BODY, media_type="application/json")
