"""HTML rendering of the operator console: the Jinja2 environment, the security headers every
console response carries, and the route class that turns errors into pages.

The headers are scoped to the console's routes (ConsoleRoute): no middleware touches the Firehose
or API paths.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape

from shared.errors import BridgeError, Unauthorized

logger = logging.getLogger(__name__)

CONSOLE_PREFIX = "/console"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# A form shown again with its errors is answered like any page (200): Chromium logs every 4xx
# document as a console error, and the page itself says what is wrong next to each field.
FORM_ERROR_STATUS = 200


class LoginRequired(Unauthorized):
    """No valid console session: the console answers with the login page instead."""


def _format_time(value: datetime | None) -> str:
    """Milliseconds, in UTC (said so) for a time with an offset."""
    if value is None:
        return ""
    if value.utcoffset() is None:
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _query(params: Mapping[str, Any], **changes: Any) -> str:
    """`?a=1&b=2` from the given parameters with changes applied; empty values are left out."""
    merged = {**params, **changes}
    pairs = [(key, str(value)) for key, value in merged.items() if value not in (None, "")]
    return "?" + urlencode(pairs) if pairs else "?"


templates = Environment(
    loader=PackageLoader("proxy.console", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["time"] = _format_time
templates.filters["pretty_json"] = _pretty_json
templates.globals["query"] = _query
templates.globals["console"] = CONSOLE_PREFIX


def render(
    request: Request, template: str, context: Mapping[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    """Render a page; the session's CSRF token (when logged in) is available to every form."""
    values = {
        "request": request,
        "csrf_token": getattr(request.state, "csrf_token", None),
        "path": request.url.path,
        **(context or {}),
    }
    return HTMLResponse(templates.get_template(template).render(values), status_code=status)


def redirect(url: str) -> Response:
    """303 to `url` (after a POST: the browser follows it with a GET)."""
    return RedirectResponse(url, status_code=303)


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    return render(request, "error.html", {"title": title, "message": message, "status": status}, status=status)


class ConsoleRoute(APIRoute):
    """A console route: security headers on every answer, errors as HTML pages, and a missing or
    expired session as a redirect to the login page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                target = request.url.path if request.method == "GET" else f"{CONSOLE_PREFIX}/"
                response = RedirectResponse(f"{CONSOLE_PREFIX}/login?{urlencode({'next': target})}", status_code=303)
                if request.headers.get("HX-Request"):
                    response = Response(status_code=204, headers={"HX-Redirect": f"{CONSOLE_PREFIX}/login"})
            except BridgeError as exc:
                response = _error_page(request, exc.http_status, exc.code.value, exc.message)
            except RequestValidationError:
                response = _error_page(request, 422, "VALIDATION_FAILED", "the address is not valid")
            except Exception as exc:
                logger.exception("console: unhandled error: %s", exc.__class__.__name__)
                response = _error_page(request, 500, "INTERNAL_ERROR", "internal error; see the proxy log")
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return console_handler
