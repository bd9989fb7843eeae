"""The token matrix through the real API: every bad token is a bare 401 that says nothing more.

Also the JWKS path (RS256 keys served by a local HTTP server): key confusion is refused and a flood
of unknown ``kid`` values does not become a flood of key-set fetches; and a tenant named in a
header, the query or the body never overrides the token's (reliability scenario 13).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import inspect
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.testing import AsyncTestClient

from flowdeck_api.app import create_app
from flowdeck_api.auth import AuthError, JwksKeySource, Principal, SecretKeySource, TokenVerifier
from flowdeck_engine.cli import main as flowdeck_main
from flowdeck_runtime.settings import AuthSettings
from tests.integration.api.conftest import EXPENSE, YAML, Api, make_settings
from tests.integration.conftest import Database

PROBE = "/v1/definitions"  # any authenticated route that every role may read


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """``header.claims.`` with no signature, and no checks on either."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."


def hmac_signed(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """A token signed with HMAC-SHA256 over ``key`` whatever it is (pyjwt refuses PEM keys for HS*)."""
    head = unsigned(header, claims)[:-1]
    return f"{head}.{b64(hmac.new(key, head.encode(), hashlib.sha256).digest())}"


def assert_bare_401(response: httpx.Response, case: object) -> None:
    assert response.status_code == 401, (case, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/problem+json"), case
    assert response.headers.get("www-authenticate") == "Bearer", case
    body = response.json()
    assert body == {
        "type": "https://flowdeck.dev/problems/unauthorized",
        "title": "Unauthorized",
        "status": 401,
        "code": "unauthorized",
        "instance": PROBE,
    }, (case, body)


@dataclass
class Tokens:
    """Claims and signatures for the HS256 development setup of the ``api`` fixture."""

    api: Api
    tenant: uuid.UUID

    def claims(self, **changes: Any) -> dict[str, Any]:
        s = self.api.settings.auth
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": s.issuer,
            "aud": s.audience,
            "sub": "alice",
            "iat": now,
            "exp": now + 600,
            "tenant": str(self.tenant),
            "roles": ["admin"],
            "groups": ["managers"],
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], *, key: str | None = None, algorithm: str = "HS256") -> str:
        return jwt.encode(claims, key or self.api.settings.auth.dev_secret(), algorithm=algorithm)

    def bearer(self, **changes: Any) -> str:
        return f"Bearer {self.sign(self.claims(**changes))}"


async def probe(api: Api, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"authorization": authorization}
    return await api.client.get(PROBE, headers=headers)


async def test_every_bad_token_is_a_bare_401(api: Api) -> None:
    tokens = Tokens(api, await api.tenant())
    assert (await probe(api, tokens.bearer())).status_code == 200
    leeway = api.settings.auth.leeway_seconds
    now = int(time.time())
    good = tokens.sign(tokens.claims())
    head, payload, signature = good.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    cases: dict[str, str | None] = {
        "no header": None,
        "empty header": "",
        "wrong scheme": f"Basic {good}",
        "token scheme": f"Token {good}",
        "no token": "Bearer ",
        "garbage": "Bearer garbage",
        "three garbage parts": "Bearer a.b.c",
        "bad signature": f"Bearer {head}.{payload}.{flipped}",
        "no signature": f"Bearer {head}.{payload}.",
        "alg none": f"Bearer {unsigned({'alg': 'none', 'typ': 'JWT'}, tokens.claims())}",
        "alg None": f"Bearer {unsigned({'alg': 'None', 'typ': 'JWT'}, tokens.claims())}",
        "another secret": f"Bearer {tokens.sign(tokens.claims(), key='not-the-secret-' * 4)}",
        "HS512, not configured": f"Bearer {tokens.sign(tokens.claims(), algorithm='HS512')}",
        "expired beyond leeway": tokens.bearer(iat=now - 7200, exp=now - leeway - 5),
        "not yet valid (nbf)": tokens.bearer(nbf=now + leeway + 60),
        "issued in the future": tokens.bearer(iat=now + leeway + 60, exp=now + 7200),
        "wrong issuer": tokens.bearer(iss="someone-else"),
        "wrong audience": tokens.bearer(aud="another-api"),
        "audience list without ours": tokens.bearer(aud=["another-api", "a-third"]),
        "tenant not a uuid": tokens.bearer(tenant="acme"),
        "tenant a number": tokens.bearer(tenant=12345),
        "tenant an object": tokens.bearer(tenant={"id": str(tokens.tenant)}),
        "tenant a list": tokens.bearer(tenant=[str(tokens.tenant)]),
        "roles not a list": tokens.bearer(roles="admin"),
        "unknown role": tokens.bearer(roles=["root"]),
        "a known and an unknown role": tokens.bearer(roles=["member", "superuser"]),
        "empty roles": tokens.bearer(roles=[]),
        "roles of objects": tokens.bearer(roles=[{"admin": True}]),
        "roles of lists": tokens.bearer(roles=[["admin"]]),
        "roles with null": tokens.bearer(roles=[None]),
        "groups not a list": tokens.bearer(groups="managers"),
        "groups of numbers": tokens.bearer(groups=[1]),
        "empty sub": tokens.bearer(sub=""),
        "numeric sub": tokens.bearer(sub=42),
        "huge sub": tokens.bearer(sub="x" * 10_000),
        "exp not a number": tokens.bearer(exp="tomorrow"),
    }
    for claim in ("exp", "iat", "iss", "aud", "sub", "tenant", "roles"):
        cases[f"no {claim}"] = f"Bearer {tokens.sign({k: v for k, v in tokens.claims().items() if k != claim})}"
    for case, authorization in cases.items():
        assert_bare_401(await probe(api, authorization), case)
    odd_kid = hmac_signed(
        {"alg": "HS256", "typ": "JWT", "kid": {"a": 1}}, tokens.claims(), api.settings.auth.dev_secret().encode()
    )
    assert_bare_401(await probe(api, f"Bearer {odd_kid}"), "kid an object")
    within_leeway = tokens.bearer(iat=now - 7200, exp=now - leeway + 10)
    assert (await probe(api, within_leeway)).status_code == 200


async def test_suspended_and_unknown_tenants_are_refused(api: Api) -> None:
    suspended = Tokens(api, await api.tenant("sleepy", status="suspended"))
    assert_bare_401(await probe(api, suspended.bearer()), "suspended")
    nowhere = Tokens(api, uuid.uuid4())
    assert_bare_401(await probe(api, nowhere.bearer()), "no such tenant")
    active = Tokens(api, await api.tenant())
    assert (await probe(api, active.bearer())).status_code == 200


async def test_every_route_guard_runs_on_the_event_loop(api: Api) -> None:
    """Litestar runs a guard that is a plain function in its thread pool: a thread hop per request."""
    assert api.app is not None
    guarded = 0
    for route in api.app.routes:
        for handler in getattr(route, "route_handlers", ()):
            for guard in handler.resolve_guards():
                assert inspect.iscoroutinefunction(guard), (route.path, guard)
                guarded += 1
    assert guarded > 10


async def test_the_tenant_comes_only_from_the_token(api: Api) -> None:
    a = await api.tenant("a")
    b = await api.tenant("b")
    admin_a = api.token(a, "root", "admin")
    assert (await api.client.post("/v1/definitions", content=EXPENSE, headers={**admin_a, **YAML})).status_code == 201
    started = await api.client.post(
        "/v1/instances", json={"workflow": "expense-approval", "input": {"amount": 5}}, headers=admin_a
    )
    instance = started.json()["id"]
    tokens_b = Tokens(api, b)
    # Extra claims that name tenant A are ignored: only the configured claim counts.
    admin_b = {"authorization": tokens_b.bearer(tenant_id=str(a), org=str(a), tid=str(a))}
    pretend = {"x-tenant-id": str(a), "x-flowdeck-tenant": str(a), "tenant": str(a), "tenant-id": str(a)}
    query = {"tenant": str(a), "tenant_id": str(a)}

    listed = await api.client.get("/v1/instances", params=query, headers={**admin_b, **pretend})
    assert listed.status_code == 200 and listed.json()["items"] == []
    definitions = await api.client.get("/v1/definitions", params=query, headers={**admin_b, **pretend})
    assert definitions.status_code == 200 and definitions.json() == []
    one = await api.client.get(f"/v1/instances/{instance}", params=query, headers={**admin_b, **pretend})
    assert one.status_code == 404
    in_body = await api.client.post(
        "/v1/instances", json={"workflow": "expense-approval", "tenant_id": str(a)}, headers={**admin_b, **pretend}
    )
    assert in_body.status_code == 400 and in_body.json()["code"] == "invalid_request"
    in_input = await api.client.post(
        "/v1/instances",
        json={"workflow": "expense-approval", "input": {"tenant_id": str(a), "tenant": str(a)}},
        params=query,
        headers={**admin_b, **pretend},
    )
    assert in_input.status_code == 404 and in_input.json()["code"] == "workflow_not_found"
    mine = (await api.client.get("/v1/instances", headers=admin_a)).json()["items"]
    assert [i["id"] for i in mine] == [instance]


# --- the JWKS path ----------------------------------------------------------------------------


@dataclass
class JwksServer:
    url: str
    keys: dict[str, Any]
    fetches: int = 0


@pytest.fixture
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks_server(rsa_key: rsa.RSAPrivateKey) -> Iterator[JwksServer]:
    """A key set with one RS256 key (``kid`` "k1") on a local HTTP server that counts its fetches."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    state = JwksServer(url="", keys={"keys": [jwk]})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches += 1
            body = json.dumps(state.keys).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
async def jwks_api(truncated: Database, tmp_path: Path, jwks_server: JwksServer) -> AsyncIterator[Api]:
    """The API verifying RS256 tokens with the keys of ``jwks_server``."""
    base = make_settings(truncated, tmp_path / "dev-secret")
    auth = AuthSettings(
        issuer="flowdeck-test",
        audience="flowdeck",
        algorithms=("RS256",),
        jwks_url=jwks_server.url,
        dev_secret_file=tmp_path / "unused",
    )
    settings = replace(base, auth=auth)
    async with AsyncTestClient(create_app(settings)) as client:
        yield Api(client, settings, truncated)


def rs256(key: rsa.RSAPrivateKey, claims: dict[str, Any], kid: str | None = "k1") -> str:
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid} if kid else None)


async def test_jwks_key_confusion_and_forgeries_are_refused(
    jwks_api: Api, jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    tokens = Tokens(jwks_api, await jwks_api.tenant())
    claims = tokens.claims()
    assert (await probe(jwks_api, f"Bearer {rs256(rsa_key, claims)}")).status_code == 200
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk_json = json.dumps(jwks_server.keys["keys"][0]).encode()
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "HS256 signed with the public PEM": hmac_signed({"alg": "HS256", "kid": "k1"}, claims, public_pem),
        "HS256 with the PEM, no kid": hmac_signed({"alg": "HS256"}, claims, public_pem),
        "HS256 signed with the JWK": hmac_signed({"alg": "HS256", "kid": "k1"}, claims, jwk_json),
        "alg none": unsigned({"alg": "none", "kid": "k1"}, claims),
        "another RSA key, our kid": rs256(other_key, claims),
        "no kid": rs256(rsa_key, claims, kid=None),
        "RS512 with our key": jwt.encode(claims, rsa_key, algorithm="RS512", headers={"kid": "k1"}),
        "expired": rs256(rsa_key, tokens.claims(exp=int(time.time()) - 3600)),
    }
    for case, token in cases.items():
        assert_bare_401(await probe(jwks_api, f"Bearer {token}"), case)


async def test_a_flood_of_unknown_kids_fetches_the_key_set_at_most_once(
    jwks_api: Api, jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    tokens = Tokens(jwks_api, await jwks_api.tenant())
    claims = tokens.claims()
    assert (await probe(jwks_api, f"Bearer {rs256(rsa_key, claims)}")).status_code == 200
    before = jwks_server.fetches
    assert before == 1
    flood = [f"Bearer {rs256(rsa_key, claims, kid=uuid.uuid4().hex)}" for _ in range(1_000)]
    for start in range(0, len(flood), 100):
        responses = await asyncio.gather(*(probe(jwks_api, token) for token in flood[start : start + 100]))
        for response in responses:
            assert_bare_401(response, "random kid")
    # The default min_refresh_interval is 30 s and the set was fetched just now: no fetch at all.
    assert jwks_server.fetches - before <= 1
    assert (await probe(jwks_api, f"Bearer {rs256(rsa_key, claims)}")).status_code == 200


async def test_unknown_kids_force_one_refresh_per_interval_and_rotated_keys_arrive() -> None:
    """The same key source on a fake clock: refreshes are rate-limited, yet a new key is found."""
    first = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    second = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        return {**data, "kid": kid, "alg": "RS256"}

    published = {"keys": [jwk(first, "k1")]}
    now = [1_000.0]
    source = JwksKeySource(
        "http://keys.invalid/jwks",
        max_age=300.0,
        min_refresh_interval=30.0,
        fetch=lambda url, timeout: published,
        monotonic=lambda: now[0],
    )
    assert (await source.key_for("k1")).key_id == "k1"
    assert source.fetches == 1
    for _ in range(1_000):
        with pytest.raises(AuthError):
            await source.key_for(uuid.uuid4().hex)
    assert source.fetches == 1  # fetched just now: the flood is refused from memory
    published = {"keys": [jwk(first, "k1"), jwk(second, "k2")]}
    with pytest.raises(AuthError):
        await source.key_for("k2")  # rotated in, but a refresh is not due yet
    now[0] += 31
    results = await asyncio.gather(*(source.key_for("k2") for _ in range(50)), return_exceptions=True)
    assert all(getattr(r, "key_id", None) == "k2" for r in results)
    assert source.fetches == 2  # fifty concurrent misses, one refresh
    for _ in range(1_000):
        with pytest.raises(AuthError):
            await source.key_for(uuid.uuid4().hex)
    assert source.fetches == 2
    published = {"keys": [jwk(second, "k2")]}
    now[0] += 301
    with pytest.raises(AuthError):
        await source.key_for("k1")  # rotated out: gone after max_age
    assert source.fetches == 3


# --- flowdeck token ---------------------------------------------------------------------------

FLOWDECK = Path(sys.executable).with_name("flowdeck")


def flowdeck_token(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWDECK_", "OTEL_"))}
    return subprocess.run(
        [str(FLOWDECK), "token", *args], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


async def test_the_token_command_mints_tokens_the_api_accepts(api: Api, tmp_path: Path) -> None:
    tenant = await api.tenant()
    auth = api.settings.auth
    env = {
        "FLOWDECK_DEV_SECRET_FILE": str(auth.dev_secret_file),
        "FLOWDECK_JWT_ISSUER": auth.issuer,
        "FLOWDECK_JWT_AUDIENCE": auth.audience,
    }
    args = ["--tenant", str(tenant), "--sub", "alice", "--role", "admin", "--role", "member"]
    done = flowdeck_token(env, *args, "--group", "managers", "--group", "finance", "--ttl", "2h")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert done.stdout == token + "\n" and token.count(".") == 2

    principal = await TokenVerifier(auth, SecretKeySource(auth.dev_secret())).verify(token)
    assert principal == Principal(tenant, "alice", frozenset({"managers", "finance"}), frozenset({"admin", "member"}))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 7200
    headers = {"authorization": f"Bearer {token}"}
    uploaded = await api.client.post("/v1/definitions", content=EXPENSE, headers={**headers, **YAML})
    assert uploaded.status_code == 201, uploaded.text  # an admin token of that tenant

    fresh = tmp_path / "new" / "dev-secret"
    member = flowdeck_token({**env, "FLOWDECK_DEV_SECRET_FILE": str(fresh)}, "--tenant", str(tenant), "--sub", "bob")
    assert member.returncode == 0, member.stderr
    assert fresh.stat().st_mode & 0o777 == 0o600  # generated on first use, private
    fresh_auth = replace(auth, dev_secret_file=fresh)
    bob = await TokenVerifier(fresh_auth, SecretKeySource(fresh_auth.dev_secret())).verify(member.stdout.strip())
    assert (bob.user_id, bob.roles, bob.groups) == ("bob", frozenset({"member"}), frozenset())
    assert_bare_401(await probe(api, f"Bearer {member.stdout.strip()}"), "signed with another secret")


async def test_the_token_command_refuses_production_keys_and_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = str(uuid.uuid4())
    secret = {"FLOWDECK_DEV_SECRET_FILE": str(tmp_path / "dev-secret")}
    jwks = flowdeck_token({**secret, "FLOWDECK_JWKS_URL": "https://idp.example/jwks"}, "--tenant", tenant, "--sub", "a")
    assert jwks.returncode == 2 and jwks.stdout == "" and "FLOWDECK_JWKS_URL" in jwks.stderr
    assert not (tmp_path / "dev-secret").exists()
    for bad in (  # usage errors stop before the settings are read: run in this process
        ["--tenant", "acme", "--sub", "a"],
        ["--tenant", tenant, "--sub", ""],
        ["--tenant", tenant, "--sub", "a", "--role", "root"],
        ["--tenant", tenant, "--sub", "a", "--ttl", "forever"],
        ["--tenant", tenant, "--sub", "a", "--ttl", "90d"],
        ["--tenant", tenant, "--sub", "a", "--ttl", "0s"],
        ["--sub", "a"],
    ):
        assert flowdeck_main(["token", *bad]) == 2, bad
        assert capsys.readouterr().out == "", bad
