"""Remove secrets from payloads before they are stored or logged."""

from __future__ import annotations

import copy
from typing import Any

REDACTED = "[REDACTED]"
SECRET_SETTING_IDS = frozenset({"authenticationToken"})


def redact_payload(payload: Any) -> Any:
    """A copy of a Firehose payload with `account.account_settings.authenticationToken` redacted."""
    if not isinstance(payload, dict):
        return payload
    account = payload.get("account")
    if not isinstance(account, dict) or not isinstance(account.get("account_settings"), dict):
        return payload
    redacted = copy.copy(payload)
    redacted_account = dict(account)
    redacted_account["account_settings"] = {
        key: (REDACTED if key in SECRET_SETTING_IDS else value) for key, value in account["account_settings"].items()
    }
    redacted["account"] = redacted_account
    return redacted
