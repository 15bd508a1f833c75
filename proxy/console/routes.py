"""Console routes outside a tenant: login, logout, the start page and the vendored static files."""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.datastructures import FormData

from proxy.console import auth
from proxy.console.forms import FormErrors, text
from proxy.console.rendering import CONSOLE_PREFIX, FORM_ERROR_STATUS, ConsoleRoute, redirect, render
from proxy.dependencies import SettingsDep
from shared.errors import NotFound

router = APIRouter(route_class=ConsoleRoute)

# The only files served under /console/static/, with their media types.
STATIC_FILES = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "htmx.min.js": "text/javascript; charset=utf-8",
}
STATIC_MAX_AGE_SECONDS = 3600


def _safe_next(target: str | None) -> str:
    """Only a console path is a place to go back to after logging in (no open redirect)."""
    if target and target.startswith(CONSOLE_PREFIX + "/") and "//" not in target and "\\" not in target:
        return target
    return f"{CONSOLE_PREFIX}/tenants"


def _login_page(request: Request, settings: SettingsDep, next_url: str, errors: FormErrors, status: int) -> Response:
    response = Response()
    token = auth.new_login_form_token(request, response, settings)
    page = render(
        request, "login.html", {"login_token": token, "next": next_url, "errors": errors, "anonymous": True}, status
    )
    for value in response.headers.getlist("set-cookie"):
        page.headers.append("set-cookie", value)
    return page


@router.get("/")
async def start(_: auth.ConsoleSessionDep) -> Response:
    return redirect(f"{CONSOLE_PREFIX}/tenants")


@router.get("/login")
async def login_form(request: Request, settings: SettingsDep, next: Annotated[str | None, Query()] = None) -> Response:
    return _login_page(request, settings, _safe_next(next), FormErrors(), 200)


async def _form(request: Request) -> FormData:
    return await request.form()


@router.post("/login")
async def login(request: Request, settings: SettingsDep, form: Annotated[FormData, Depends(_form)]) -> Response:
    next_url = _safe_next(text(form, "next"))
    errors = FormErrors()
    if not auth.login_form_token_valid(request, settings, form.get(auth.CSRF_FIELD)):
        errors.add("", "The login form expired; please try again.")
    elif not auth.admin_key_matches(settings, text(form, "admin_key")):
        errors.add("admin_key", "This is not the admin key.")
    if errors:
        return _login_page(request, settings, next_url, errors, FORM_ERROR_STATUS)
    response = redirect(next_url)
    auth.start_session(request, response, settings)
    return response


@router.post("/logout")
async def logout(_: auth.CheckedForm) -> Response:
    response = redirect(f"{CONSOLE_PREFIX}/login")
    auth.end_session(response)
    return response


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise NotFound(f"no static file {name!r}")
    body = resources.files("proxy.console").joinpath("static", name).read_bytes()
    return Response(body, media_type=media_type, headers={"Cache-Control": f"public, max-age={STATIC_MAX_AGE_SECONDS}"})
