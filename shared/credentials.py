"""Generating, hashing and comparing secrets (admin key, engine keys, inbound tokens)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

ENGINE_KEY_PREFIX = "lbk_"
INBOUND_TOKEN_PREFIX = "lbt_"


def new_engine_key() -> str:
    """A fresh engine API key (shown once, stored only as a hash)."""
    return ENGINE_KEY_PREFIX + secrets.token_urlsafe(32)


def new_inbound_token() -> str:
    """A fresh inbound authentication token (operators paste it into mParticle)."""
    return INBOUND_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """SHA-256 hex of a high-entropy key; enough because the keys are random, not passwords."""
    return hashlib.sha256(key.encode()).hexdigest()


def secrets_equal(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; False when either side is missing."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def key_matches_hash(given: str | None, expected_hash: str | None) -> bool:
    """Constant-time check of a presented key against a stored hash."""
    if not given or not expected_hash:
        return False
    return hmac.compare_digest(hash_key(given), expected_hash)
