"""Admin routes: tenants (to be implemented)."""

from fastapi import APIRouter

router = APIRouter()
