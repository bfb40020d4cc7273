"""Deadlines of calls to services: a channel's own, a call's, ``civitas call --timeout``;
the lifetime of the tokens ``civitas token`` mints."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import grpc
import jwt
import pytest

from civitas.call import call
from civitas.chassis.client import open_channel
from civitas.cli import main
from tests.support.process_state import logging_put_back


@pytest.mark.parametrize("timeout", ["0", "-1", "inf", "nan", "1e400", "soon"])
# refused with: "not a number of seconds" or "must be a finite number above 0 seconds"
def test_a_deadline_that_is_not_a_finite_time_above_zero_is_refused(
    timeout: str, cli_state: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["call", "party_orgs.GetAdminUnit", '{"code": "QH"}', "--timeout", timeout])

    assert exited.value.code == 2
    said = capsys.readouterr().err
    assert "--timeout: " in said
    assert f"seconds: {timeout!r}" in said


@pytest.mark.parametrize(
    ("target", "refusal"),
    [
        ("parks.GetPark", "name a method as SERVICE.Method, with SERVICE one of"),
        ("party_orgs", "name a method as SERVICE.Method"),
        ("party_orgs.GetPark", "party_orgs has no method GetPark"),
    ],
)
async def test_a_method_its_service_s_stubs_do_not_declare_is_refused_before_dialling(
    target: str, refusal: str
) -> None:
    with pytest.raises(SystemExit) as refused:
        await call(target, "{}", "t", "127.0.0.1:1", 0.5)

    assert str(refused.value.code).startswith(refusal)


async def test_a_call_to_a_server_that_never_answers_ends_at_its_deadline() -> None:
    with socket.socket() as silent:  # accepts connections, says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        began = time.monotonic()
        with pytest.raises(SystemExit) as failed:
            await call("party_orgs.GetAdminUnit", '{"code": "QH"}', "t", address, 0.5)
        took = time.monotonic() - began

    assert str(failed.value.code).startswith("DEADLINE_EXCEEDED")
    assert 0.4 < took < 4


async def test_a_channel_gives_each_call_its_deadline_unless_the_call_sets_one() -> None:
    async def slow(request: bytes, context: Any) -> bytes:
        await asyncio.sleep(10)
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "t.Slow", {"Call": grpc.unary_unary_rpc_method_handler(slow)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = open_channel(f"127.0.0.1:{port}", lambda: "t", timeout_seconds=2.0)
    took = {}
    try:
        for name, timeout in (("channel's", None), ("call's", 0.3)):
            began = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await channel.unary_unary("/t.Slow/Call")(b"", timeout=timeout)
            took[name] = (failed.value.code(), time.monotonic() - began)
    finally:
        await channel.close()
        await server.stop(None)

    # a deadline from grpcio's service config fired up to two seconds early
    assert took["channel's"][0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 1.9 < took["channel's"][1] < 4
    assert took["call's"][0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.25 < took["call's"][1] < 1.5


@pytest.fixture
def cli_state() -> Iterator[None]:
    """The CLI sets the umask and configures logging for its process: put them back."""
    with logging_put_back():
        yield


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


@pytest.mark.parametrize(
    ("ttl", "seconds"), [(None, 3600), ("90", 90), ("30m", 1800), ("12h", 43200)]
)
def test_civitas_token_lives_an_hour_unless_told_and_prints_only_the_token(
    ttl: str | None,
    seconds: int,
    cli_state: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CIVITAS_AUTH_SECRET", "t" * 40)
    lifetime = ["--ttl", ttl] if ttl else []

    code = main(["token", "--role", "auditor", "--scope", "QH-03", *lifetime])

    out, err = capsys.readouterr()
    claims = claims_of(out.strip())
    assert code == 0
    assert err == ""
    assert claims["exp"] - claims["iat"] == seconds
    assert (claims["roles"], claims["scope"]) == (["auditor"], ["QH-03"])


@pytest.mark.parametrize("ttl", ["43201", "13h", "721m", "0", "-1", "1.5", "²", "soon", "h", ""])
# refused with: "a token lives from 1 s to 12 h" or "not a lifetime (3600, 90m, 8h)"
def test_civitas_token_refuses_a_lifetime_over_12_hours_or_under_a_second(
    ttl: str, cli_state: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIVITAS_AUTH_SECRET", "t" * 40)

    with pytest.raises(SystemExit) as exited:
        main(["token", "--role", "auditor", "--ttl", ttl])

    out, err = capsys.readouterr()
    assert exited.value.code == 2
    assert out == ""
    assert "--ttl: " in err
    assert f"{ttl!r}" in err
    assert "t" * 40 not in err


def test_civitas_token_refuses_a_malformed_subject_without_a_traceback(
    cli_state: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIVITAS_AUTH_SECRET", "t" * 40)

    with pytest.raises(SystemExit) as exited:
        main(["token", "--role", "auditor", "--subject", "two words"])

    assert "no token: subject 'two words'" in str(exited.value.code)
    assert capsys.readouterr().out == ""
