"""``civitas token``, and the tokens other commands mint for their own calls."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from civitas.chassis.auth import MAX_TOKEN_SECONDS, Role, TokenAuthority
from civitas.chassis.settings import from_environment, read_secret
from civitas.cli.options import Commands, until_interrupted

_UNITS = {"s": 1, "m": 60, "h": 3600}


def token_lifetime(text: str) -> int:
    """A token's lifetime: whole seconds (``3600``) or with a unit (``90m``, ``8h``),
    from 1 s to :data:`MAX_TOKEN_SECONDS` (12 h)."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    if not re.fullmatch(r"[0-9]{1,6}", number):
        raise argparse.ArgumentTypeError(f"not a lifetime (3600, 90m, 8h): {text!r}")
    seconds = int(number) * _UNITS[unit]
    if not 1 <= seconds <= MAX_TOKEN_SECONDS:
        raise argparse.ArgumentTypeError(
            f"a token lives from 1 s to 12 h ({MAX_TOKEN_SECONDS} s), not {text!r}"
        )
    return seconds


def mint(var: str, subject: str, roles: list[str], scope: list[str], ttl: int) -> str:
    """A token signed with ``$CIVITAS_AUTH_SECRET``, else the secret ``civitas up`` wrote
    under ``var``; exits with a message when there is none or the claims are malformed."""
    secret = from_environment("auth_secret") or read_secret(Path(var))
    if not secret:
        raise SystemExit("no token secret: set CIVITAS_AUTH_SECRET or run `civitas up` first")
    authority = TokenAuthority(secret)
    try:
        return authority.mint(subject, roles, scope, ttl_seconds=ttl)
    except ValueError as refused:  # a malformed subject or scope
        raise SystemExit(f"civitas: no token: {refused}") from None


def district_admin(var: str, subject: str, ttl: int) -> str:
    """A district admin's token over the whole district, for the CLI's own calls."""
    return mint(var, subject, ["district_admin"], ["QH"], ttl)


def token(commands: Commands, var_default: str) -> None:
    command = commands.add_parser("token", help="mint a bearer token for local use")
    command.add_argument(
        "--role",
        action="append",
        required=True,
        choices=[r.value for r in Role],
        help="repeat for several roles",
    )
    command.add_argument(
        "--scope",
        action="append",
        default=[],
        help="unit code the person works for (QH, QH-03, ...); repeatable",
    )
    command.add_argument("--subject", default="local-user")
    command.add_argument(
        "--ttl",
        type=token_lifetime,
        default=3600,
        help="lifetime: seconds, or 90m, 8h (default 1 h, at most 12 h)",
    )
    command.add_argument("--var", default=var_default)
    command.set_defaults(run=until_interrupted(_print_token))


def _print_token(args: argparse.Namespace) -> int:
    print(mint(args.var, args.subject, args.role, args.scope, args.ttl))
    return 0
