"""Finding the subject of a data subject request among the loyalty customers (pure core).

The subject's identities (`subject_identities`, firehose.md §4.6) are tried in order, first match
wins: the tenant's configured identifier pair when its Firehose identity type has a DSR counterpart
(`customer` <- controller_customer_id, `email` <- email), then controller_customer_id as the
customer id, then email as the `email` attribute. Hashed identities cannot match stored values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from shared.mapping.inbound import CUSTOMER_ID_FIELD, RAW_ENCODING, SenderKey

CONTROLLER_CUSTOMER_ID = "controller_customer_id"
EMAIL = "email"
# Which DSR subject identity carries each Firehose identity type a tenant may resolve by.
DSR_IDENTITY_KEYS = {"customer": CONTROLLER_CUSTOMER_ID, "email": EMAIL}


class SubjectIdentity(Protocol):
    @property
    def encoding(self) -> str | None: ...
    @property
    def value(self) -> str | None: ...


def subject_values(identities: Mapping[str, SubjectIdentity]) -> dict[str, str]:
    """The raw subject identity values, by key (hashed and empty ones left out)."""
    return {
        key: identity.value
        for key, identity in identities.items()
        if identity.value and (identity.encoding or RAW_ENCODING) == RAW_ENCODING
    }


def subject_candidates(
    tenant_id: str, customer_identifier_field: str, loyalty_identifier_field: str, values: Mapping[str, str]
) -> list[SenderKey]:
    """How the subject may be found, in order of preference (no duplicates)."""
    candidates: list[SenderKey] = []
    configured_key = DSR_IDENTITY_KEYS.get(customer_identifier_field)
    if configured_key and configured_key in values:
        candidates.append((tenant_id, loyalty_identifier_field, values[configured_key]))
    if CONTROLLER_CUSTOMER_ID in values:
        candidates.append((tenant_id, CUSTOMER_ID_FIELD, values[CONTROLLER_CUSTOMER_ID]))
    if EMAIL in values:
        candidates.append((tenant_id, EMAIL, values[EMAIL]))
    return list(dict.fromkeys(candidates))
