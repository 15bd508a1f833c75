"""The operator console (issue 14): server-rendered HTML pages under /console, logged in with the
admin key. Every page parses its forms with the admin API's schemas and calls the same
repositories and services as the REST routes; see docs/console.md."""

from fastapi import APIRouter

from proxy.console import config_lists, data_subjects, error_log, messages, records, routes, settings, tenants
from proxy.console.rendering import CONSOLE_PREFIX

router = APIRouter(prefix=CONSOLE_PREFIX, include_in_schema=False)
for module in (routes, tenants, settings, config_lists, records, error_log, messages, data_subjects):
    router.include_router(module.router)

__all__ = ["router"]
