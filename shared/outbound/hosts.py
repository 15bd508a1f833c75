"""Where outbound S2S requests may go (SSRF guard): a pure policy, no I/O.

`https://*.mparticle.com` (default port) is always allowed; any other host only when it matches
OUTBOUND_ALLOWED_HOSTS (comma-separated `host`, `host:port`, `*.domain`, `*.domain:port`). Only an
allow-listed host may use plain http or resolve to a loopback, private, link-local, multicast or
reserved address. The proxy checks URLs when settings are saved (no DNS look-up then); the worker's
transport checks the URL again and every resolved address when it sends (worker/outbound/safe_transport.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

MPARTICLE_DOMAIN = "mparticle.com"
HTTPS_PORT = 443
DEFAULT_PORTS = {"http": 80, "https": 443}

# mParticle data pods and their S2S base URLs (reference/notes/s2s.md). US1 also answers on
# s2s.us1.mparticle.com; the first URL of each pod is the one a pod choice fills in.
POD_API_URLS: dict[str, tuple[str, ...]] = {
    "US1": ("https://s2s.mparticle.com", "https://s2s.us1.mparticle.com"),
    "US2": ("https://s2s.us2.mparticle.com",),
    "EU1": ("https://s2s.eu1.mparticle.com",),
    "AU1": ("https://s2s.au1.mparticle.com",),
}


def pod_api_url(pod: str) -> str:
    """The S2S base URL of an mParticle pod (`US1`, `US2`, `EU1`, `AU1`)."""
    return POD_API_URLS[pod][0]


def pod_of(api_url: str) -> str | None:
    """The pod whose S2S base URL `api_url` is (a trailing `/` or `/v2` tolerated), else None."""
    base = api_url.rstrip("/").removesuffix("/v2").rstrip("/").lower()
    for pod, urls in POD_API_URLS.items():
        if base in urls:
            return pod
    return None


class DestinationRefused(Exception):
    """An outbound URL or address the SSRF policy refuses; the message says why."""


@dataclass(frozen=True)
class HostPattern:
    """One OUTBOUND_ALLOWED_HOSTS entry: an exact host or a `*.` suffix, with an optional port."""

    host: str  # lower case, without the `*.`
    wildcard: bool
    port: int | None

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host


def normalize_host(host: str) -> str:
    """Lower case, without a trailing dot or IPv6 brackets."""
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def _parse_pattern(text: str) -> HostPattern:
    value = text.strip().lower()
    port: int | None = None
    if value.startswith("["):  # [ipv6] or [ipv6]:port
        host, _, rest = value[1:].partition("]")
        if rest:
            port = _port(rest.removeprefix(":"), text)
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
        port = _port(port_text, text)
    else:
        host = value
    wildcard = host.startswith("*.")
    host = normalize_host(host.removeprefix("*."))
    if not host or "*" in host or "/" in host or "@" in host:
        raise ValueError(f"OUTBOUND_ALLOWED_HOSTS: {text!r} is not a host, host:port or *.domain pattern")
    return HostPattern(host, wildcard, port)


def _port(text: str, pattern: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"OUTBOUND_ALLOWED_HOSTS: {pattern!r} has an invalid port")
    return int(text)


@dataclass(frozen=True)
class AllowedHosts:
    """The parsed OUTBOUND_ALLOWED_HOSTS list and the decisions made from it."""

    patterns: tuple[HostPattern, ...] = ()

    @classmethod
    def parse(cls, value: str | None) -> AllowedHosts:
        """Parse a comma-separated list (empty entries ignored); ValueError names a bad entry."""
        entries = [entry for entry in (value or "").split(",") if entry.strip()]
        return cls(tuple(_parse_pattern(entry) for entry in entries))

    def is_listed(self, host: str, port: int) -> bool:
        """True when OUTBOUND_ALLOWED_HOSTS names this host (and port)."""
        host = normalize_host(host)
        return any(pattern.matches(host, port) for pattern in self.patterns)

    def check_url(self, url: str) -> None:
        """Refuse (DestinationRefused) a URL the policy does not allow; no DNS look-up."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise DestinationRefused(f"api_url must use https (got {scheme or 'no'} scheme)")
        if "@" in parts.netloc:
            raise DestinationRefused("api_url must not carry credentials (user:password@)")
        host = normalize_host(parts.hostname or "")
        if not host:
            raise DestinationRefused("api_url has no host")
        if not host.isascii():
            raise DestinationRefused("api_url's host must be ASCII (use its punycode form)")
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise DestinationRefused("api_url has an invalid port") from None
        if self.is_listed(host, port):
            return
        if is_mparticle_host(host):
            if scheme != "https" or port != HTTPS_PORT:
                raise DestinationRefused(
                    f"{host} is an mParticle host: api_url must be https on the default port"
                    " (plain http or another port only for hosts named in OUTBOUND_ALLOWED_HOSTS)"
                )
            return
        raise DestinationRefused(
            f"host {host!r} is not allowed: api_url must be an mParticle pod (https://*.{MPARTICLE_DOMAIN})"
            " or a host named in OUTBOUND_ALLOWED_HOSTS"
        )

    def check_address(self, host: str, port: int, address: str) -> None:
        """Refuse a resolved address of a host that is not allow-listed when it is not public."""
        if self.is_listed(host, port):
            return
        if not is_public_address(address):
            raise DestinationRefused(
                f"{normalize_host(host)} resolves to {address}, a non-public address: refused"
                " (only hosts named in OUTBOUND_ALLOWED_HOSTS may resolve to private addresses)"
            )


def is_mparticle_host(host: str) -> bool:
    """True for `*.mparticle.com` names (not mparticle.com look-alikes)."""
    return normalize_host(host).endswith("." + MPARTICLE_DOMAIN)


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address; False for loopback, private, link-local,
    multicast, reserved, unspecified and anything unparsable."""
    try:
        ip = ipaddress.ip_address(normalize_host(address.split("%", 1)[0]))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )
