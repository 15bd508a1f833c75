"""The echo-loop guard's marker (pure core).

When a tenant uses both directions, an event the bridge sends to mParticle (S2S) can come back
through the Output/Event connection (Firehose) and be awarded a second time. Every S2S event the
bridge builds carries ECHO_FLAG in its `custom_flags`; a Firehose event that carries it is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ECHO_FLAG = "LoyaltyBridge.Origin"
ECHO_FLAG_VALUE = "loyalty-bridge"


def echo_flags() -> dict[str, str]:
    """The `custom_flags` every outbound S2S event carries."""
    return {ECHO_FLAG: ECHO_FLAG_VALUE}


def is_echo(event: Mapping[str, Any]) -> bool:
    """Whether a Firehose event is one the bridge itself sent to mParticle."""
    flags = event.get("custom_flags")
    if flags is None:  # the common case, decided without an ABC isinstance check
        return False
    return isinstance(flags, Mapping) and flags.get(ECHO_FLAG) == ECHO_FLAG_VALUE
