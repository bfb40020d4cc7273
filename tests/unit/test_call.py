"""Deadlines of calls to services: a channel's own, a call's, ``civitas call --timeout``."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import grpc
import pytest

from civitas.call import call
from civitas.chassis.client import open_channel
from civitas.cli import main


@pytest.mark.parametrize("timeout", ["0", "-1", "inf", "nan", "1e400", "soon"])
# refused with: "not a number of seconds" or "must be a finite number above 0 seconds"
def test_a_deadline_that_is_not_a_finite_time_above_zero_is_refused(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["call", "party_orgs.GetAdminUnit", '{"code": "QH"}', "--timeout", timeout])

    assert exited.value.code == 2
    said = capsys.readouterr().err
    assert "--timeout: " in said
    assert f"seconds: {timeout!r}" in said


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
