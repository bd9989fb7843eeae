"""Outbound webhook delivery: the signature, the retry schedule, and a sender that keeps to public hosts.

Each request is a POST of the event as JSON with these headers::

    Flowdeck-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
    Flowdeck-Event: instance.completed
    Flowdeck-Delivery: <delivery id>      (the same on every retry: receivers de-duplicate on it)

A receiver recomputes the HMAC over the timestamp and the raw body with its subscription's secret,
compares in constant time, and refuses timestamps older than a few minutes (replays). Any 2xx
answer delivers; anything else (or no answer) is retried with exponential backoff until the
attempts are used up. Endpoints must be HTTPS on public addresses: the sender resolves the host,
refuses private, loopback and link-local addresses, and connects to the very address it checked
(a DNS answer that changes in between cannot redirect it); redirects are not followed. Hosts in
``allowed_hosts`` are exempt (development, tests).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

import httpx

from flowdeck_engine.documents.http import is_forbidden_address

if TYPE_CHECKING:
    from flowdeck_runtime.settings import WebhookSettings
    from flowdeck_store.webhooks import DeliveryWork

SIGNATURE: Final = "Flowdeck-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Flowdeck-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None, tolerance: float = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds (a receiver's check)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt: delivered or not, the status code (None without an answer), an error text."""

    delivered: bool
    status_code: int | None
    error: str | None


def next_attempt(settings: WebhookSettings, attempts: int, now: datetime) -> datetime | None:
    """When to try again after ``attempts`` failed attempts (None: give up)."""
    if attempts >= settings.max_attempts:
        return None
    delay = min(settings.initial_delay_seconds * settings.backoff ** (attempts - 1), settings.max_delay_seconds)
    return now + timedelta(seconds=delay)


def event_body(work: DeliveryWork, tenant_id: str) -> bytes:
    """The JSON body of a delivery: the event as the tenant's API shows it."""
    return json.dumps(
        {
            "id": str(work.event_id),
            "type": work.event_type,
            "occurred_at": work.occurred_at.isoformat(),
            "tenant_id": tenant_id,
            "instance_id": str(work.instance_id),
            "data": work.payload,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


class WebhookSender:
    """Sends deliveries over one pooled HTTP client (no proxies from the environment, no redirects)."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._client = httpx.AsyncClient(
            timeout=settings.timeout_seconds,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": "Flowdeck"},
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def send(self, work: DeliveryWork, tenant_id: str) -> Outcome:
        """Try ``work`` once."""
        body = event_body(work, tenant_id)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE: sign(work.secret, int(time.time()), body),
            "Flowdeck-Event": work.event_type,
            "Flowdeck-Delivery": str(work.id),
        }
        try:
            url, extensions = await self._pinned(work.url, headers)
            response = await self._client.post(url, content=body, headers=headers, extensions=extensions)
        except _Refused as exc:
            return Outcome(False, None, str(exc))
        except httpx.HTTPError as exc:
            return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= response.status_code < 300:
            return Outcome(True, response.status_code, None)
        return Outcome(False, response.status_code, f"answered {response.status_code}")

    async def _pinned(self, url: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host in self.settings.allowed_hosts:
            return url, {}
        if parts.scheme != "https" or not host:
            raise _Refused("the endpoint must be an https:// URL")
        port = parts.port or 443
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise _Refused(f"cannot resolve {host!r}") from exc
        addresses = [str(info[4][0]) for info in infos]
        if not addresses or any(map(is_forbidden_address, addresses)):
            raise _Refused(f"the host {host!r} is not a public address")
        address = addresses[0]
        literal = f"[{address}]" if ":" in address else address
        headers["Host"] = parts.netloc.rsplit("@", 1)[-1]
        pinned = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
        return pinned, {"sni_hostname": host}


class _Refused(Exception):
    """The endpoint may not be called."""


__all__ = ["SIGNATURE", "Outcome", "WebhookSender", "event_body", "next_attempt", "sign", "verify"]
