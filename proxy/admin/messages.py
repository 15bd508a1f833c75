"""Admin routes: messages (to be implemented)."""

from fastapi import APIRouter

router = APIRouter()
