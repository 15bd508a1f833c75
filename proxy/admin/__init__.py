"""The operators' admin API under /api/v1 (CONTRACT §5). Every route needs the admin key."""

from fastapi import APIRouter

from proxy.dependencies import AdminAuth

router = APIRouter(dependencies=[AdminAuth])
