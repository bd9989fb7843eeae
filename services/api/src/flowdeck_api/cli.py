"""``flowdeck token``: print a development bearer token, signed with the generated dev secret.

    flowdeck token --tenant UUID --sub USER [--role admin|member|service]... [--group G]... [--ttl 12h]

The settings (``FLOWDECK_*``) give the issuer, audience, algorithm, claim names and the secret file
(created on first use). With ``FLOWDECK_JWKS_URL`` set the command refuses: production tokens come
from the identity provider, whose keys Flowdeck never holds. Only the token goes to stdout, so
``TOKEN=$(flowdeck token ...)`` works.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import jwt

from flowdeck_api.auth import ROLES
from flowdeck_engine import ValidationError
from flowdeck_runtime.settings import get_settings

if TYPE_CHECKING:
    from collections.abc import Iterable

    from flowdeck_runtime.settings import AuthSettings

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TTL = re.compile(r"(\d{1,7})([smhd]?)")
MAX_TTL = timedelta(days=30)


def parse_ttl(text: str) -> timedelta:
    """``90``, ``45s``, ``30m``, ``12h`` or ``7d`` as a duration (1 second to 30 days)."""
    match = _TTL.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 45s, 30m, 12h or 7d")
    ttl = timedelta(seconds=int(match[1]) * _UNITS[match[2] or "s"])
    if not timedelta(seconds=1) <= ttl <= MAX_TTL:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 1 second and 30 days")
    return ttl


def _uuid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UUID") from None


def _name(text: str) -> str:
    if not 0 < len(text) <= 256:
        raise argparse.ArgumentTypeError("must be 1 to 256 characters")
    return text


def dev_token(
    auth: AuthSettings,
    *,
    tenant: UUID,
    subject: str,
    roles: Iterable[str],
    groups: Iterable[str],
    ttl: timedelta,
    now: datetime | None = None,
) -> str:
    """A token that :class:`~flowdeck_api.auth.TokenVerifier` accepts with these ``auth`` settings."""
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": auth.issuer,
        "aud": auth.audience,
        "sub": subject,
        "iat": issued,
        "exp": issued + ttl,
        auth.tenant_claim: str(tenant),
        auth.roles_claim: sorted(set(roles)),
        auth.groups_claim: sorted(set(groups)),
    }
    return jwt.encode(claims, auth.dev_secret(), algorithm=auth.algorithms[0])


class TokenCommand:
    """Mints development tokens (the ``token`` entry of the ``flowdeck.commands`` group).

    Exit status: 0 with the token on stdout; 2 on usage errors, invalid settings, or a configured
    JWKS URL.
    """

    help = "print a development bearer token signed with the dev secret (refused when a JWKS URL is set)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Add the claims' arguments."""
        parser.add_argument("--tenant", required=True, type=_uuid, metavar="UUID", help="the tenant's id")
        parser.add_argument("--sub", required=True, type=_name, metavar="USER", help="the user (the sub claim)")
        parser.add_argument(
            "--role",
            action="append",
            dest="roles",
            choices=sorted(ROLES),
            help="a role (repeatable; default: member)",
        )
        parser.add_argument(
            "--group", action="append", dest="groups", default=[], type=_name, metavar="G", help="a group (repeatable)"
        )
        parser.add_argument(
            "--ttl", type=parse_ttl, default=timedelta(hours=12), help="lifetime: 45s, 30m, 12h, 7d (default 12h)"
        )

    def run(self, args: argparse.Namespace) -> int:
        """Print the token."""
        try:
            auth = get_settings().auth
        except ValidationError as exc:
            print(f"flowdeck token: invalid settings: {exc.detail}", file=sys.stderr)
            return 2
        if auth.jwks_url:
            print(
                "flowdeck token: FLOWDECK_JWKS_URL is set: tokens come from your identity provider, "
                "not from Flowdeck (unset it to mint development tokens)",
                file=sys.stderr,
            )
            return 2
        token = dev_token(
            auth, tenant=args.tenant, subject=args.sub, roles=args.roles or ["member"], groups=args.groups, ttl=args.ttl
        )
        print(token)
        return 0


TOKEN = TokenCommand()
"""The ``token`` command."""
