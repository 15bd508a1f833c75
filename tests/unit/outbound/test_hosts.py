"""The SSRF policy of outbound S2S URLs and addresses (shared/outbound/hosts.py), as tables."""

from __future__ import annotations

import pytest

from shared.outbound.hosts import AllowedHosts, DestinationRefused, is_public_address, pod_api_url, pod_of

NONE = ""
LOCAL = "127.0.0.1,localhost:8080,*.corp.example"


@pytest.mark.parametrize(
    ("allowed", "url"),
    [
        (NONE, "https://s2s.mparticle.com"),
        (NONE, "https://s2s.eu1.mparticle.com/v2"),
        (NONE, "https://S2S.US2.MPARTICLE.COM"),
        (NONE, "https://s2s.mparticle.com.:443"),
        (LOCAL, "http://127.0.0.1:9999"),
        (LOCAL, "https://127.0.0.1"),
        (LOCAL, "http://localhost:8080"),
        (LOCAL, "http://api.corp.example"),
        (LOCAL, "http://deep.api.corp.example:81/v2"),
        ("s2s.mparticle.com", "http://s2s.mparticle.com"),  # named: plain http allowed
        ("[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_allowed_urls(allowed: str, url: str) -> None:
    AllowedHosts.parse(allowed).check_url(url)


@pytest.mark.parametrize(
    ("allowed", "url", "reason"),
    [
        (NONE, "http://s2s.mparticle.com", "must be https on the default port"),
        (NONE, "https://s2s.mparticle.com:8443", "must be https on the default port"),
        (NONE, "https://mparticle.com", "is not allowed"),
        (NONE, "https://s2s.mparticle.com.evil.test", "is not allowed"),
        (NONE, "https://evilmparticle.com", "is not allowed"),
        (NONE, "https://127.0.0.1", "is not allowed"),
        (NONE, "https://169.254.169.254/latest/meta-data", "is not allowed"),
        (NONE, "https://[::1]", "is not allowed"),
        (NONE, "https://10.0.0.8", "is not allowed"),
        (NONE, "https://user:pw@s2s.mparticle.com", "must not carry credentials"),
        (NONE, "ftp://s2s.mparticle.com", "must use https"),
        (NONE, "https://xn--s2s-mparticle.com", "is not allowed"),
        (NONE, "https://s2s.mpartícle.com", "must be ASCII"),
        (LOCAL, "http://localhost", "is not allowed"),  # localhost only on :8080
        (LOCAL, "http://corp.example", "is not allowed"),  # *.corp.example means subdomains
        (LOCAL, "http://127.0.0.2", "is not allowed"),
    ],
)
def test_refused_urls(allowed: str, url: str, reason: str) -> None:
    with pytest.raises(DestinationRefused, match=reason):
        AllowedHosts.parse(allowed).check_url(url)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("52.1.2.3", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),  # noqa: S104 (an address to classify, not a bind)
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:52.1.2.3", True),
        ("ff02::1", False),
        ("not an address", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


@pytest.mark.parametrize(
    ("allowed", "host", "port", "address", "refused"),
    [
        (NONE, "s2s.mparticle.com", 443, "52.1.2.3", False),
        (NONE, "s2s.mparticle.com", 443, "127.0.0.1", True),  # DNS rebinding
        (NONE, "s2s.mparticle.com", 443, "10.0.0.1", True),
        (LOCAL, "localhost", 8080, "127.0.0.1", False),
        (LOCAL, "api.corp.example", 80, "10.0.0.1", False),
        ("s2s.mparticle.com", "s2s.mparticle.com", 443, "127.0.0.1", False),
    ],
)
def test_resolved_addresses(allowed: str, host: str, port: int, address: str, refused: bool) -> None:
    policy = AllowedHosts.parse(allowed)
    if refused:
        with pytest.raises(DestinationRefused, match="non-public address"):
            policy.check_address(host, port, address)
    else:
        policy.check_address(host, port, address)


@pytest.mark.parametrize("value", ["host:0", "host:70000", "host:http", "*", "*.", "user@host", "host/path", "[::1]:x"])
def test_malformed_patterns_are_named(value: str) -> None:
    with pytest.raises(ValueError, match="OUTBOUND_ALLOWED_HOSTS"):
        AllowedHosts.parse(value)


@pytest.mark.parametrize(
    ("pod", "url"),
    [
        ("US1", "https://s2s.mparticle.com"),
        ("US2", "https://s2s.us2.mparticle.com"),
        ("EU1", "https://s2s.eu1.mparticle.com"),
        ("AU1", "https://s2s.au1.mparticle.com"),
    ],
)
def test_pods_fill_in_their_s2s_host(pod: str, url: str) -> None:
    assert pod_api_url(pod) == url
    assert pod_of(url) == pod
    assert pod_of(url + "/v2/") == pod


@pytest.mark.parametrize(
    ("url", "pod"),
    [("https://s2s.us1.mparticle.com", "US1"), ("http://127.0.0.1:9", None), ("https://s2s.eu2.mparticle.com", None)],
)
def test_pod_of_other_urls(url: str, pod: str | None) -> None:
    assert pod_of(url) == pod
