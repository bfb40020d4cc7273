"""``civitas up`` as a user runs it, with no secret given: it makes the token secret, and
everything the platform writes under var/ is its owner's alone; the admin token it
prints lives a stated, bounded time and reaches the console in the address's fragment."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import jwt
import pytest

from civitas.chassis.auth import MAX_TOKEN_SECONDS
from civitas.runner import CONSOLE_TOKEN_HOURS
from tests.support.platform import address_of, civitas_up, cli
from tests.support.process_state import umask

pytestmark = pytest.mark.slow


async def test_civitas_up_makes_var_private_and_prints_a_bounded_token_in_a_fragment(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    with umask(0o022):  # what civitas up is started with must not matter
        async with civitas_up(tmp_path, {"CIVITAS_AUTH_SECRET": ""}) as platform:
            await cli(  # a write through a service, with a token minted from the new secret
                platform.env | {"CIVITAS_AUTH_SECRET": ""},
                tmp_path,
                "party_orgs.RegisterAdminUnit",
                {"code": "QH", "name": "秦淮区"},
                address_of(platform.env, "party_orgs"),
            )
            written = {
                str(path.relative_to(tmp_path)): stat.S_IMODE(path.stat().st_mode)
                for path in [var, *var.rglob("*")]
            }
    printed = platform.printed

    assert written["var"] == written["var/party_orgs"] == written["var/insights"] == 0o700
    assert written["var/auth-secret"] == 0o600
    assert "var/party_orgs/events.db-wal" in written
    assert "var/party_orgs/events.db-shm" in written
    shared = {path: oct(mode) for path, mode in written.items() if mode & 0o077}
    assert shared == {}
    token = re.search(
        r"admin token \(district_admin, scope QH, 8 h: until [^)]+\):\n(\S+)", printed
    )
    assert token, printed
    claims = jwt.decode(token.group(1), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == CONSOLE_TOKEN_HOURS * 3600 <= MAX_TOKEN_SECONDS
    assert f"/#token={token.group(1)}" in printed
    assert "?token=" not in printed
