"""Checking the inbound token a Firehose message presents against its tenant's stored hash."""

from __future__ import annotations

import hmac

from shared.secret_box import SecretBox


class InboundTokenCheck:
    """SecretBox.token_matches (a keyed hash, compared in constant time), remembering per tenant
    the last token that matched: mParticle presents the same token on every call, and the next one
    is then checked by a constant-time comparison alone (the keyed hash cost ~5 µs, 4 % of a
    Firehose request, py-spy). A remembered token counts only with the stored hash it matched, so
    after a rotation the old token is checked afresh, and refused."""

    def __init__(self, box: SecretBox) -> None:
        self._box = box
        self._last_match: dict[str, tuple[str, bytes]] = {}

    def matches(self, tenant_id: str, presented: str | None, stored_hash: str | None) -> bool:
        """Whether `presented` is the token whose hash is `stored_hash`."""
        if not presented or not stored_hash:
            return False
        token = presented.encode()
        remembered = self._last_match.get(tenant_id)
        if remembered is not None and remembered[0] == stored_hash and hmac.compare_digest(remembered[1], token):
            return True
        if not self._box.token_matches(presented, stored_hash):
            return False
        self._last_match[tenant_id] = (stored_hash, token)
        return True
