"""The ``http`` action's network side: the host policy, and a small injectable transport.

:class:`StdlibTransport` resolves the host, refuses it when any of its addresses is not globally
routable (loopback, private, link-local, cloud metadata, shared, reserved, multicast, ...) unless
the :class:`HttpPolicy` allows that host, then connects to the very address it checked (so a DNS
answer that changes between check and connect cannot slip through). It uses ``http.client``, not
``urllib``, because urllib follows redirects (to any address) and honours proxy variables, and
runs it in a thread. Tests inject a resolver, or replace the transport as a whole.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from flowdeck_engine.documents.errors import ForbiddenHostError, HttpCallError

if TYPE_CHECKING:
    from collections.abc import Callable

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """The platform's settings for ``http`` actions."""

    allowed_hosts: frozenset[str] = frozenset()
    """Host names (lower case) or IP literals exempt from the private-address check."""
    max_response_bytes: int = 256 * 1024
    max_timeout: timedelta = timedelta(seconds=30)
    """Caps each call's own timeout."""
    user_agent: str = "Flowdeck"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One call: ``body`` is JSON (None for none); ``timeout`` in seconds; ``idempotency_key`` is
    sent as ``Idempotency-Key`` (the same on every run of one step attempt)."""

    method: str
    url: str
    body: bytes | None
    timeout: float
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """The answer: status code and body bytes."""

    status: int
    body: bytes


class HttpTransport(Protocol):
    """Sends one HTTP request (the seam tests replace)."""

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send ``request``; raise :class:`HttpCallError` when no answer comes."""
        ...


def is_forbidden_address(address: str) -> bool:
    """Whether an IP address is one a tenant's call must not reach: anything not globally routable
    (loopback, private, link-local and so cloud metadata, shared, reserved, unspecified), and multicast.
    IPv4 addresses embedded in IPv6 (mapped, 6to4, Teredo, NAT64) are judged as IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_forbidden_address(str(embedded))
    return not ip.is_global or ip.is_multicast


def url_problem(url: str, policy: HttpPolicy) -> tuple[str, str] | None:
    """What is wrong with an ``http`` action's URL, checked without the network: a problem code
    and message, or None.

    The URL must be ``https://`` with a host, without user info (``http.url_invalid``); a literal
    IP address or a ``localhost`` name must be allowed by the policy or public (``http.host_forbidden``).
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return "http.url_invalid", f"the URL is not valid: {exc}"
    host = (parts.hostname or "").lower()
    if parts.scheme != "https":
        return "http.url_invalid", "the URL must start with https://"
    if not host:
        return "http.url_invalid", "the URL has no host"
    if parts.username is not None or parts.password is not None:
        return "http.url_invalid", "the URL must not carry user names or passwords"
    if host in policy.allowed_hosts:
        return None
    forbidden = host == "localhost" or host.endswith(".localhost")
    if not forbidden:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None
        forbidden = is_forbidden_address(host)
    return ("http.host_forbidden", f"the host {host!r} is not allowed") if forbidden else None


def _resolve(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class _PinnedConnection(http.client.HTTPSConnection):
    """An HTTPS connection to ``address``, verified against ``host``'s certificate."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class StdlibTransport:
    """The default transport: stdlib only, host policy enforced, redirects not followed."""

    def __init__(
        self,
        policy: HttpPolicy | None = None,
        *,
        resolver: Callable[[str, int], list[str]] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy or HttpPolicy()
        self._resolve = resolver or _resolve
        self._context = context

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send ``request`` from a worker thread."""
        return await asyncio.to_thread(self._send, request)

    def _send(self, request: HttpRequest) -> HttpResponse:
        problem = url_problem(request.url, self.policy)
        if problem is not None:
            raise HttpCallError(problem[1], non_retryable=True)
        parts = urlsplit(request.url)
        host = (parts.hostname or "").lower()
        port = parts.port or 443
        try:
            addresses = self._resolve(host, port)
        except OSError as exc:
            raise HttpCallError(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
        if not addresses or (host not in self.policy.allowed_hosts and any(map(is_forbidden_address, addresses))):
            raise ForbiddenHostError(host)
        timeout = min(request.timeout, self.policy.max_timeout.total_seconds())
        context = self._context or ssl.create_default_context()
        connection = _PinnedConnection(host, port, addresses[0], timeout, context)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": self.policy.user_agent, "Accept": "application/json"}
        if request.body is not None:
            headers["Content-Type"] = "application/json"
        if request.idempotency_key is not None:
            headers["Idempotency-Key"] = request.idempotency_key
        try:
            connection.request(request.method, path, request.body, headers)
            response = connection.getresponse()
            body = response.read(self.policy.max_response_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise HttpCallError(f"{request.method} {host} failed: {type(exc).__name__}") from None
        finally:
            connection.close()
        if len(body) > self.policy.max_response_bytes:
            raise HttpCallError(f"the response of {host} is larger than {self.policy.max_response_bytes} bytes")
        return HttpResponse(response.status, body)
