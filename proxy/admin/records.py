"""Admin routes: records (to be implemented)."""

from fastapi import APIRouter

router = APIRouter()
