"""The operators' admin API under /api/v1 (CONTRACT §5). Every route needs the admin key."""

from fastapi import APIRouter

from proxy.admin.configuration import routes as configuration
from proxy.admin.errorlog import routes as incoming_errors
from proxy.admin.messages import routes as messages
from proxy.admin.records import routes as records
from proxy.admin.tenants import routes as tenants
from proxy.dependencies import AdminAuth

router = APIRouter(dependencies=[AdminAuth])
router.include_router(tenants.router)
router.include_router(configuration.router)
router.include_router(records.router)
router.include_router(messages.router)
router.include_router(incoming_errors.router)
