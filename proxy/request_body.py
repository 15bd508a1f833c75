"""Reading a request body with a size limit (413 in the error envelope beyond it)."""

from __future__ import annotations

from fastapi import Request

from shared.errors import PayloadTooLarge


async def read_limited_body(request: Request, limit_bytes: int) -> bytes:
    """The whole body, refused beyond `limit_bytes`: by its declared length when there is one,
    else by counting while reading (chunked bodies)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_bytes:
        raise PayloadTooLarge(f"the body is larger than {limit_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise PayloadTooLarge(f"the body is larger than {limit_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
