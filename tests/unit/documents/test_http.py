"""The http action's host policy and the stdlib transport (no network needed)."""

from __future__ import annotations

import socket

import pytest

from flowdeck_engine.documents import (
    ForbiddenHostError,
    HttpCallError,
    HttpPolicy,
    HttpRequest,
    StdlibTransport,
    is_forbidden_address,
)
from flowdeck_engine.documents import http as http_module
from flowdeck_engine.documents.http import url_problem


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata (AWS, GCP, Azure)
        "100.100.100.200",  # Alibaba metadata (shared address space)
        "100.64.0.1",
        "192.0.2.1",
        "240.0.0.1",
        "255.255.255.255",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%eth0",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "ff02::1",
        "not an address",
    ],
)
def test_addresses_a_tenant_must_not_reach(address: str) -> None:
    assert is_forbidden_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert not is_forbidden_address(address)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://api.example.com/v1?x=1", None),
        ("https://10.0.0.5/", "not allowed"),
        ("https://[::1]:8443/", "not allowed"),
        ("https://localhost/", "not allowed"),
        ("https://admin.localhost/", "not allowed"),
        ("https://8.8.8.8/", None),
        ("http://api.example.com/", "https://"),
        ("ftp://api.example.com/", "https://"),
        ("https:///path", "no host"),
        ("https://user:pw@api.example.com/", "user names"),
        ("https://api.example.com:99999/", "not valid"),
    ],
)
def test_url_checks_without_the_network(url: str, problem: str | None) -> None:
    found = url_problem(url, HttpPolicy())
    assert found is None if problem is None else problem in (found or ("", ""))[1]


def test_the_platform_may_allow_an_internal_host() -> None:
    policy = HttpPolicy(allowed_hosts=frozenset({"10.0.0.5", "billing.internal"}))
    assert url_problem("https://10.0.0.5/", policy) is None


def request(url: str = "https://api.example.com/x") -> HttpRequest:
    return HttpRequest("POST", url, b"{}", 5.0)


@pytest.mark.parametrize("answer", [["10.0.0.8"], ["93.184.215.14", "169.254.169.254"], []])
async def test_a_host_resolving_to_a_private_address_is_refused(answer: list[str]) -> None:
    transport = StdlibTransport(resolver=lambda host, port: answer)
    with pytest.raises(ForbiddenHostError) as info:
        await transport.send(request())
    assert info.value.host == "api.example.com" and info.value.non_retryable


async def test_a_url_refused_before_resolving() -> None:
    resolved: list[str] = []
    transport = StdlibTransport(resolver=lambda host, port: resolved.append(host) or ["8.8.8.8"])  # type: ignore[func-returns-value]
    with pytest.raises(HttpCallError, match="https://"):
        await transport.send(request("http://api.example.com/"))
    assert resolved == []


async def test_a_name_that_does_not_resolve() -> None:
    def fail(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(HttpCallError, match="cannot resolve") as info:
        await StdlibTransport(resolver=fail).send(request())
    assert not info.value.non_retryable


async def test_an_allowed_host_is_connected_at_the_address_checked() -> None:
    with socket.socket() as server:  # a closed loopback port: the connection is refused
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
    policy = HttpPolicy(allowed_hosts=frozenset({"internal.example"}))
    transport = StdlibTransport(policy, resolver=lambda host, port: ["127.0.0.1"])
    with pytest.raises(HttpCallError, match="failed: ConnectionRefusedError"):
        await transport.send(request(f"https://internal.example:{port}/x"))


Headers = dict[str, str] | None


def test_the_idempotency_key_is_sent_as_a_header(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: dict[str, str] = {}

    def request(
        self: object, method: str, url: str, body: object = None, headers: dict[str, str] | None = None
    ) -> None:
        sent.update(headers or {})
        raise OSError("recorded, not sent")

    monkeypatch.setattr(http_module._PinnedConnection, "request", request)
    transport = StdlibTransport(HttpPolicy(allowed_hosts=frozenset({"10.0.0.7"})), resolver=lambda *_: ["10.0.0.7"])
    with pytest.raises(HttpCallError):
        transport._send(HttpRequest("POST", "https://10.0.0.7/x", b"{}", 5.0, "i:s:2"))
    assert sent["Idempotency-Key"] == "i:s:2"
