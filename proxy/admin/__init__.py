"""The operators' admin API under /api/v1 (CONTRACT §5). Every route needs the admin key."""

from fastapi import APIRouter

from proxy.admin.configuration import routes as configuration
from proxy.admin.erasures import routes as erasures
from proxy.admin.errorlog import routes as incoming_errors
from proxy.admin.messages import routes as messages
from proxy.admin.records import routes as records
from proxy.admin.tenants import routes as tenants
from proxy.dependencies import AdminAuth
from proxy.openapi import api_error_responses
from proxy.request_body import ADMIN_MAX_BODY_BYTES

# A body over ADMIN_MAX_BODY_BYTES is answered 413 (also a chunked one, counted while read).
router = APIRouter(dependencies=[AdminAuth], responses=api_error_responses(), max_body_size=ADMIN_MAX_BODY_BYTES)
router.include_router(tenants.router)
router.include_router(configuration.router)
router.include_router(records.router)
router.include_router(messages.router)
router.include_router(incoming_errors.router)
router.include_router(erasures.router)
