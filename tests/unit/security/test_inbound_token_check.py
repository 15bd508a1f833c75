"""The Firehose inbound-token check: the keyed hash, and the remembered last match per tenant."""

from __future__ import annotations

import pytest

from proxy.firehose.tokens import InboundTokenCheck
from shared.secret_box import SecretBox

BOX = SecretBox(["k" * 32])
TOKEN_A, TOKEN_B = "lbt_token-of-tenant-a", "lbt_token-of-tenant-b"
HASH_A, HASH_B = BOX.token_hash(TOKEN_A), BOX.token_hash(TOKEN_B)
ROTATED_A = "lbt_rotated-token-of-a"
HASH_ROTATED_A = BOX.token_hash(ROTATED_A)

# (tenant, presented token, stored hash, accepted), checked in order by one InboundTokenCheck, so
# that each row also runs against what the rows above it left remembered.
CASES = [
    ("a", TOKEN_A, HASH_A, True),  # by the keyed hash
    ("a", TOKEN_A, HASH_A, True),  # remembered
    ("a", TOKEN_B, HASH_A, False),  # another tenant's token
    ("a", TOKEN_A + "x", HASH_A, False),
    ("a", "", HASH_A, False),
    ("a", None, HASH_A, False),
    ("a", TOKEN_A, None, False),  # no token stored (disconnected)
    ("b", TOKEN_A, HASH_B, False),  # what tenant a has remembered is not tenant b's
    ("b", TOKEN_B, HASH_B, True),
    ("a", TOKEN_A, HASH_ROTATED_A, False),  # rotated: the remembered token no longer counts
    ("a", ROTATED_A, HASH_ROTATED_A, True),
    ("a", TOKEN_A, HASH_ROTATED_A, False),
]


def test_cases_in_order() -> None:
    check = InboundTokenCheck(BOX)
    outcomes = [check.matches(tenant, presented, stored) for tenant, presented, stored, _ in CASES]
    assert outcomes == [accepted for *_, accepted in CASES]


@pytest.mark.parametrize(("tenant", "presented", "stored", "accepted"), CASES)
def test_each_case_on_a_fresh_check(tenant: str, presented: str | None, stored: str | None, accepted: bool) -> None:
    assert InboundTokenCheck(BOX).matches(tenant, presented, stored) is accepted
