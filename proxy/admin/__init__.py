"""The operators' admin API under /api/v1 (CONTRACT §5). Every route needs the admin key."""

from fastapi import APIRouter

from proxy.admin import configuration, incoming_errors, messages, records, tenants
from proxy.dependencies import AdminAuth

router = APIRouter(dependencies=[AdminAuth])
router.include_router(tenants.router)
router.include_router(configuration.router)
router.include_router(records.router)
router.include_router(messages.router)
router.include_router(incoming_errors.router)
