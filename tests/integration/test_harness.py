"""The harness's own servers answer."""

from __future__ import annotations

from urllib.parse import urlparse

from tests.integration.servers import redis_ping


def test_redis_answers(redis_url: str) -> None:
    url = urlparse(redis_url)
    assert redis_ping(url.hostname or "127.0.0.1", url.port or 6379)
