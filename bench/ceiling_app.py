"""The ingest ceiling: a separate, minimal FastAPI program whose one route reads the body and parses
it with the proxy's JSON library. No middleware, no lifespan, no other routes; served by uvicorn
with the proxy's own options (shared.cli.PROXY_SERVER_OPTIONS), so the proxy's ratio to it is what
the proxy's own code, app and middleware cost.

`python -m bench.ceiling_app --port N`
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

from shared.cli import PROXY_SERVER_OPTIONS

app = FastAPI()

_OK_BODY = b'{"ok":true}'


@app.post("/mparticle/firehose")
async def parse(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(_OK_BODY, media_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling_app")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", **PROXY_SERVER_OPTIONS)


if __name__ == "__main__":
    main()
