"""A verified token is remembered until it expires (at most a minute), and only that exact token."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import jwt
import pytest

from flowdeck_api.auth import AuthError, SecretKeySource, TokenVerifier, mint_token
from flowdeck_runtime.settings import AuthSettings

SECRET = "s" * 32


class CountingKeys(SecretKeySource):
    """The shared secret, counting how often a token's key is looked up (one per verification)."""

    def __init__(self) -> None:
        super().__init__(SECRET)
        self.lookups = 0

    async def key_for(self, kid: str | None) -> str:
        self.lookups += 1
        return await super().key_for(kid)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def settings(tmp_path: Path) -> AuthSettings:
    return AuthSettings(
        issuer="flowdeck-test", audience="flowdeck", algorithms=("HS256",), jwks_url=None,
        dev_secret_file=tmp_path / "secret", leeway_seconds=0,
    )  # fmt: skip


def token(ttl: timedelta = timedelta(hours=1), subject: str = "alice") -> str:
    return mint_token(
        SECRET, issuer="flowdeck-test", audience="flowdeck", tenant_id=uuid.uuid4(), subject=subject, ttl=ttl
    )


async def test_a_token_is_checked_once_while_remembered(tmp_path: Path) -> None:
    keys = CountingKeys()
    verifier = TokenVerifier(settings(tmp_path), keys)
    text = token()
    first = await verifier.verify(text)
    assert await verifier.verify(text) == first
    assert keys.lookups == 1
    await verifier.verify(token(subject="bob"))  # another token: checked
    assert keys.lookups == 2


async def test_a_token_is_remembered_for_a_minute_at_most_and_never_past_its_expiry(tmp_path: Path) -> None:
    keys = CountingKeys()
    long = token(ttl=timedelta(minutes=10))
    short = token(ttl=timedelta(seconds=30), subject="bob")
    start = float(jwt.decode(short, options={"verify_signature": False})["iat"])
    clock = Clock(start)
    verifier = TokenVerifier(settings(tmp_path), keys, clock=clock)
    await verifier.verify(long)
    await verifier.verify(short)
    clock.now = start + 29
    await verifier.verify(long)
    await verifier.verify(short)
    assert keys.lookups == 2  # both remembered
    clock.now = start + 31  # past the short token's expiry: checked again (pyjwt's own clock says valid)
    await verifier.verify(short)
    assert keys.lookups == 3
    clock.now = start + 61  # past a minute: the long one is checked again too
    await verifier.verify(long)
    assert keys.lookups == 4


async def test_refused_tokens_are_never_remembered_and_the_memory_is_bounded(tmp_path: Path) -> None:
    keys = CountingKeys()
    verifier = TokenVerifier(settings(tmp_path), keys, max_remembered=3)
    good = token()
    bad = good[: good.rindex(".") + 1] + "A" * 43  # another signature
    for _ in range(2):
        with pytest.raises(AuthError):
            await verifier.verify(bad)
    assert keys.lookups == 2  # checked each time: a refusal is never remembered
    for n in range(10):
        await verifier.verify(token(subject=f"user{n}"))
    assert len(verifier._seen) <= 3
