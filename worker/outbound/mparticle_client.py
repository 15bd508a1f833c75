"""mParticle S2S client: POSTs batches and turns every answer (or failure) into a DeliveryOutcome.

Transport errors and timeouts, 429 and 5xx are retryable; any other 4xx (and 3xx) is permanent
(reference/notes/s2s.md §2). Nothing here touches the database or decides about resends.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
import orjson

from shared.mapping.pacing import parse_percent_used
from shared.observability.metrics import S2S_ATTEMPT_CONNECTION_ERROR, S2S_ATTEMPT_TIMEOUT, record_s2s_status
from shared.outbound.hosts import DestinationRefused
from shared.outbound.limits import BULK_EVENTS_PATH, EVENTS_PATH

ERROR_TEXT_MAX_CHARS = 500
USER_AGENT = "loyalty-bridge/0.1 (+mParticle S2S)"
PERCENT_USED_HEADER = "x-mp-rate-limit-percentage-used"
# Older configurations carried the full path; everything up to /v2 is the pod's base URL.
_TOLERATED_SUFFIXES = ("/v2/bulkevents", "/v2/events", "/v2")


@dataclass(frozen=True)
class S2SDestination:
    """Where and as whom a tenant's batches are sent."""

    api_url: str
    api_key: str
    api_secret: str


@dataclass(frozen=True)
class Delivered:
    """mParticle took the batches. Every outcome carries mParticle's X-MP-Rate-Limit-Percentage-Used
    when the answer had one: the pacing (worker/outbound/pacing.py) follows it."""

    status_code: int
    percent_used: float | None = None


@dataclass(frozen=True)
class Retryable:
    status_code: int | None
    error: str
    retry_after_seconds: float | None = None
    percent_used: float | None = None


@dataclass(frozen=True)
class Permanent:
    status_code: int | None
    error: str
    percent_used: float | None = None


DeliveryOutcome = Delivered | Retryable | Permanent


def s2s_url(api_url: str, path: str) -> str:
    """`{api_url}{path}`, tolerating a trailing slash and a trailing `/v2` (or a full S2S path)."""
    base = api_url.strip().rstrip("/")
    for suffix in _TOLERATED_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base + path


def parse_retry_after(value: str | None, now_epoch_seconds: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or invalid."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - now_epoch_seconds, 0.0)
    return seconds if seconds >= 0 else None


def error_text(response: httpx.Response) -> str:
    """`HTTP <status>` plus the S2S error envelope's messages (or the start of the body)."""
    detail = ""
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        detail = "; ".join(
            ": ".join(str(part) for part in (item.get("code"), item.get("message")) if part)
            for item in body["errors"]
            if isinstance(item, dict)
        )
    elif response.content:
        detail = response.content.decode("utf-8", errors="replace").strip()
    text = f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
    return text[:ERROR_TEXT_MAX_CHARS]


def classify_response(response: httpx.Response, now_epoch_seconds: float) -> DeliveryOutcome:
    """202 (any 2xx) delivered; 429 and 5xx retryable (429 with its Retry-After); the rest permanent."""
    status = response.status_code
    percent_used = parse_percent_used(response.headers.get(PERCENT_USED_HEADER))
    if 200 <= status < 300:
        return Delivered(status, percent_used)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now_epoch_seconds)
        return Retryable(status, error_text(response), retry_after, percent_used)
    if status >= 500:
        return Retryable(status, error_text(response), percent_used=percent_used)
    return Permanent(status, error_text(response), percent_used)


class MParticleClient:
    """Sends S2S batches over the worker's pooled httpx client, within a total timeout per request."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._timeout_seconds = timeout_seconds
        self._clock = clock

    async def send(self, destination: S2SDestination, batches: Sequence[bytes]) -> DeliveryOutcome:
        """POST one encoded batch to /v2/events, or several as an array to /v2/bulkevents."""
        if not batches:
            raise ValueError("nothing to send")
        if len(batches) == 1:
            url, body = s2s_url(destination.api_url, EVENTS_PATH), batches[0]
        else:
            url, body = s2s_url(destination.api_url, BULK_EVENTS_PATH), b"[" + b",".join(batches) + b"]"
        try:
            async with asyncio.timeout(self._timeout_seconds):
                response = await self._http.post(
                    url,
                    content=body,
                    auth=httpx.BasicAuth(destination.api_key, destination.api_secret),
                    headers={
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                        "User-Agent": USER_AGENT,
                    },
                )
        except DestinationRefused as exc:  # the SSRF guard (worker/outbound/safe_transport.py)
            return Permanent(None, f"destination refused: {exc}"[:ERROR_TEXT_MAX_CHARS])
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return Permanent(None, f"invalid api_url: {exc}"[:ERROR_TEXT_MAX_CHARS])
        except (TimeoutError, httpx.TimeoutException):
            S2S_ATTEMPT_TIMEOUT.inc()
            return Retryable(None, f"timeout: no answer within {self._timeout_seconds:g}s")
        except httpx.HTTPError as exc:
            S2S_ATTEMPT_CONNECTION_ERROR.inc()
            reason = str(exc) or exc.__class__.__name__
            return Retryable(None, f"connection error: {reason}"[:ERROR_TEXT_MAX_CHARS])
        record_s2s_status(response.status_code)
        return classify_response(response, self._clock())
