"""A JSON response rendered with orjson (FastAPI's own ORJSONResponse is deprecated)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JSONBytesResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
