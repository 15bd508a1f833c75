"""The worker's S2S HTTP client: send-time SSRF vetting (shared/outbound/hosts.py).

Every request's URL is checked against the policy; the host name is then resolved once, every
address vetted (an mParticle name resolving to a private address is refused: DNS rebinding), and
the connection made to a vetted address, while TLS SNI, certificate checks and the Host header
keep the name. Redirects are never followed and a response body is read up to
MAX_RESPONSE_BODY_BYTES (the rest is dropped). A refusal raises DestinationRefused, which the
mParticle client turns into a permanent failure of the message.
"""

from __future__ import annotations

import asyncio
import socket
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import httpcore
import httpx

from shared.outbound.hosts import AllowedHosts, DestinationRefused
from shared.settings import Settings

MAX_RESPONSE_BODY_BYTES = 64 * 1024
MAX_CONNECTIONS = 100
MAX_KEEPALIVE_CONNECTIONS = 20

# (host, port) -> the addresses it resolves to, as text.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_with_system_dns(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (getaddrinfo, TCP), in the resolver's order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class VettingNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves, vets every address, then connects to the first vetted one that answers."""

    def __init__(self, allowed_hosts: AllowedHosts, resolve: Resolver = resolve_with_system_dns) -> None:
        self._allowed_hosts = allowed_hosts
        self._resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:  # all of them first: one bad address refuses the name
            self._allowed_hosts.check_address(host, port, address)
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("unix sockets are not an S2S destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _CappedStream(httpx.AsyncByteStream):
    """A response body that ends after `limit_bytes` (the rest is not read)."""

    def __init__(self, inner: httpx.AsyncByteStream, limit_bytes: int) -> None:
        self._inner = inner
        self._limit_bytes = limit_bytes

    async def __aiter__(self) -> AsyncIterator[bytes]:
        remaining = self._limit_bytes
        async for chunk in self._inner:
            if len(chunk) >= remaining:
                yield chunk[:remaining]
                return
            remaining -= len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class SafeTransport(httpx.AsyncHTTPTransport):
    """httpx transport enforcing the outbound host policy at send time."""

    def __init__(
        self,
        allowed_hosts: AllowedHosts,
        *,
        resolve: Resolver = resolve_with_system_dns,
        limits: httpx.Limits = httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS
        ),
        max_response_body_bytes: int = MAX_RESPONSE_BODY_BYTES,
    ) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._allowed_hosts = allowed_hosts
        self._max_response_body_bytes = max_response_body_bytes
        # Same pool as httpx builds, with the vetting backend underneath (no proxy: trust_env=False).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=VettingNetworkBackend(allowed_hosts, resolve),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._allowed_hosts.check_url(str(request.url))
        response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_CappedStream(response.stream, self._max_response_body_bytes),
            extensions=response.extensions,
        )


def create_s2s_client(settings: Settings, *, resolve: Resolver = resolve_with_system_dns) -> httpx.AsyncClient:
    """The worker's pooled S2S client: vetted destinations, no redirects, total timeout per request."""
    client = httpx.AsyncClient(
        transport=SafeTransport(settings.allowed_outbound_hosts(), resolve=resolve),
        timeout=httpx.Timeout(settings.outbound_timeout_seconds),
        follow_redirects=False,
        trust_env=False,
    )
    # A redirect would leave the vetted URL: it must be answered as what it is (a permanent 3xx).
    assert not client.follow_redirects
    return client
