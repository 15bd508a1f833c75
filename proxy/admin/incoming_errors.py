"""Admin routes: incoming_errors (to be implemented)."""

from fastapi import APIRouter

router = APIRouter()
