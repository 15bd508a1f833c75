"""Secrets at rest: the S2S secret and the inbound token, encrypted with keys derived from SECRET_KEY.

SECRET_KEY holds one or more comma-separated values, newest first; each is any string of at
least MIN_SECRET_KEY_CHARS characters. From each value HKDF-SHA256 derives two independent keys:
a Fernet key (encryption) and an HMAC-SHA256 key (the inbound token's look-up hash). Encryption
uses the newest key; decryption tries every key (MultiFernet), so adding a new key in front keeps
every stored secret readable, and `loyalty-bridge rotate-secrets` re-encrypts them with the newest.

The token hash follows the same rule: written with the newest key, matched against the hashes of
every configured key, and recomputed by rotate-secrets. So a rotation never breaks Firehose
authentication, and an old key may be removed from SECRET_KEY once rotate-secrets has run.
"""

from __future__ import annotations

import base64
import functools
import hmac
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.errors import BridgeError, ErrorCode

MIN_SECRET_KEY_CHARS = 32
_HKDF_SALT = b"loyalty-bridge/secret-key/v1"
_ENCRYPTION_INFO = b"fernet encryption of stored secrets"
_TOKEN_HASH_INFO = b"hmac-sha256 look-up hash of inbound tokens"


class SecretKeyError(ValueError):
    """SECRET_KEY is missing or malformed (a start-up error)."""


class SecretUnreadable(BridgeError, code=ErrorCode.SECRET_UNREADABLE):
    """A stored secret was encrypted with a key that SECRET_KEY no longer lists (500)."""


def parse_secret_keys(value: str | None) -> tuple[str, ...]:
    """The keys of a SECRET_KEY value, newest first; SecretKeyError when missing or too short."""
    if value is None or not value.strip():
        raise SecretKeyError(
            f"SECRET_KEY is required: any string of at least {MIN_SECRET_KEY_CHARS} characters"
            " (several comma-separated, newest first, while rotating)"
        )
    keys = tuple(part.strip() for part in value.split(","))
    for position, key in enumerate(keys, start=1):
        if len(key) < MIN_SECRET_KEY_CHARS:
            raise SecretKeyError(
                f"SECRET_KEY value #{position} of {len(keys)} is {len(key)} characters long;"
                f" each comma-separated key needs at least {MIN_SECRET_KEY_CHARS}"
            )
    return keys


def _derive(secret_key: str, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=info).derive(secret_key.encode())


class SecretBox:
    """Encrypts, decrypts and hashes stored secrets with the keys of one SECRET_KEY value."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        if not secret_keys:
            raise SecretKeyError("SecretBox needs at least one key")
        self._fernets = [Fernet(base64.urlsafe_b64encode(_derive(key, _ENCRYPTION_INFO))) for key in secret_keys]
        self._multi = MultiFernet(self._fernets)
        self._hash_keys = [_derive(key, _TOKEN_HASH_INFO) for key in secret_keys]

    @property
    def key_count(self) -> int:
        return len(self._fernets)

    def encrypt(self, plaintext: str) -> str:
        """Ciphertext (URL-safe text) of `plaintext` under the newest key."""
        return self._multi.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext; SecretUnreadable when no configured key opens it."""
        try:
            return self._multi.decrypt(ciphertext.encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise _unreadable() from None

    def reencrypt(self, ciphertext: str) -> str:
        """The same secret encrypted under the newest key (SecretUnreadable as decrypt)."""
        try:
            return self._multi.rotate(ciphertext.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise _unreadable() from None

    def is_current(self, ciphertext: str) -> bool:
        """True when the newest key alone opens `ciphertext` (nothing to rotate)."""
        try:
            self._fernets[0].decrypt(ciphertext.encode("ascii"))
        except (InvalidToken, UnicodeError):
            return False
        return True

    def token_hash(self, token: str) -> str:
        """HMAC-SHA256 hex of `token` under the newest look-up key (what is stored)."""
        return hmac.digest(self._hash_keys[0], token.encode(), "sha256").hex()

    def token_matches(self, presented: str | None, stored_hash: str | None) -> bool:
        """Constant-time check of a presented token against a stored hash made with any configured key."""
        if not presented or not stored_hash:
            return False
        matched = False
        token = presented.encode()
        # Every key, always: the time does not depend on which matched. hmac.digest is the one-shot
        # C function (the HMAC object of hmac.new costs several µs more on the Firehose hot path).
        for key in self._hash_keys:
            matched |= hmac.compare_digest(hmac.digest(key, token, "sha256").hex(), stored_hash)
        return matched


def _unreadable() -> SecretUnreadable:
    return SecretUnreadable(
        "a stored secret cannot be decrypted with any SECRET_KEY value: keep the previous key in"
        " SECRET_KEY (comma-separated, newest first) until `loyalty-bridge rotate-secrets` has run"
    )


@functools.lru_cache(maxsize=8)
def secret_box_for(secret_key_value: str) -> SecretBox:
    """The SecretBox of a SECRET_KEY value, built once per process (HKDF runs at most once a key)."""
    return SecretBox(parse_secret_keys(secret_key_value))
