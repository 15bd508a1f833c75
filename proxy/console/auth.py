"""Console sessions: a signed cookie after logging in with the admin key, and CSRF tokens.

- The session cookie (`lb_console`) holds only a random CSRF token and is signed (itsdangerous,
  HMAC-SHA1 over a key derived from ADMIN_API_KEY): rotating the admin key logs every session out.
  It is HttpOnly, SameSite=Strict, Secure over https, and expires after SESSION_MAX_AGE_SECONDS.
- Every POST carries the session's CSRF token, in the `csrf_token` form field or (htmx) the
  `X-CSRF-Token` header; it is compared in constant time.
- The login form has its own short-lived signed cookie with the token of that form.
- The admin key is never put in a cookie, a URL or a page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import FormData

from proxy.console.rendering import CONSOLE_PREFIX, LoginRequired
from proxy.dependencies import SettingsDep
from shared.credentials import secrets_equal
from shared.errors import Forbidden
from shared.settings import Settings

SESSION_COOKIE = "lb_console"
LOGIN_COOKIE = "lb_console_login"
SESSION_MAX_AGE_SECONDS = 8 * 3600
LOGIN_FORM_MAX_AGE_SECONDS = 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_KEY_LABEL = b"loyalty-bridge console session signing key v1"


class CsrfRejected(Forbidden):
    """A console POST without the session's CSRF token."""


@dataclass(frozen=True)
class ConsoleSession:
    csrf_token: str


def _serializer(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    signing_key = hmac.new(settings.require_admin_api_key().encode(), _KEY_LABEL, hashlib.sha256).hexdigest()
    return URLSafeTimedSerializer(signing_key, salt=salt)


def _load(settings: Settings, salt: str, raw: str | None, max_age: int) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        data = _serializer(settings, salt).loads(raw, max_age=max_age)
    except BadSignature:  # also SignatureExpired
        return None
    if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
        return None
    return data


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=CONSOLE_PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def admin_key_matches(settings: Settings, given: str | None) -> bool:
    """Constant-time comparison with ADMIN_API_KEY."""
    return secrets_equal(given, settings.require_admin_api_key())


def start_session(request: Request, response: Response, settings: Settings) -> None:
    """Log in: a new session cookie with a fresh CSRF token; the login form's cookie is dropped."""
    value = _serializer(settings, "session").dumps({"csrf": secrets.token_urlsafe(32)})
    _set_cookie(response, request, SESSION_COOKIE, value, SESSION_MAX_AGE_SECONDS)
    response.delete_cookie(LOGIN_COOKIE, path=CONSOLE_PREFIX)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=CONSOLE_PREFIX, httponly=True, samesite="strict")


def new_login_form_token(request: Request, response: Response, settings: Settings) -> str:
    """The CSRF token of a login form, remembered in its own signed cookie."""
    token = secrets.token_urlsafe(32)
    value = _serializer(settings, "login").dumps({"csrf": token})
    _set_cookie(response, request, LOGIN_COOKIE, value, LOGIN_FORM_MAX_AGE_SECONDS)
    return token


def login_form_token_valid(request: Request, settings: Settings, given: object) -> bool:
    data = _load(settings, "login", request.cookies.get(LOGIN_COOKIE), LOGIN_FORM_MAX_AGE_SECONDS)
    return data is not None and isinstance(given, str) and secrets_equal(given, data["csrf"])


async def current_session(request: Request, settings: SettingsDep) -> ConsoleSession:
    """The logged-in session; LoginRequired (a redirect to the login page) otherwise."""
    data = _load(settings, "session", request.cookies.get(SESSION_COOKIE), SESSION_MAX_AGE_SECONDS)
    if data is None:
        raise LoginRequired("log in with the admin key")
    request.state.csrf_token = data["csrf"]
    return ConsoleSession(csrf_token=data["csrf"])


ConsoleSessionDep = Annotated[ConsoleSession, Depends(current_session)]


async def checked_form(request: Request, session: ConsoleSessionDep) -> FormData:
    """The POSTed form, once its CSRF token (field or header) matched the session's."""
    form = await request.form()
    given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not isinstance(given, str) or not secrets_equal(given, session.csrf_token):
        raise CsrfRejected("the form expired or did not come from this console; reload the page and try again")
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]
