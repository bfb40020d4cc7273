"""A server ends each connection after its age (GOAWAY), so that clients connect again
and re-resolve their target: replicas added behind a ``dns:///`` name get calls (#19)."""

from __future__ import annotations

import asyncio
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from civitas.chassis.auth import TokenAuthority
from civitas.chassis.server import start_grpc_server
from tests.support.platform import SECRET

READY = grpc.ChannelConnectivity.READY


async def _left_ready(channel: grpc.aio.Channel, times: list[float]) -> None:
    """Note each time ``channel`` leaves READY (its connection ended), until cancelled."""
    state = channel.get_state()
    while True:
        await channel.wait_for_state_change(state)
        if state == READY:
            times.append(time.monotonic())
        state = channel.get_state()


async def _connections_ended(age: float, watch: float) -> tuple[int, int]:
    """Calls for ``watch`` seconds on one channel to a server whose connections last
    ``age`` seconds: (times the channel's connection was ended, calls that failed)."""
    server = await start_grpc_server(
        [], [], authority=TokenAuthority(SECRET), max_connection_age=age, connection_age_grace=1
    )
    ended: list[float] = []
    failed = 0
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            check = health_pb2_grpc.HealthStub(channel).Check
            await channel.channel_ready()
            watching = asyncio.create_task(_left_ready(channel, ended))
            until = time.monotonic() + watch
            while time.monotonic() < until:
                try:
                    await check(health_pb2.HealthCheckRequest(), timeout=2)
                except grpc.aio.AioRpcError:
                    failed += 1
                await asyncio.sleep(0.05)
            watching.cancel()
    finally:
        await server.stop(0)
    return len(ended), failed


async def test_a_server_ends_connections_after_their_age_and_the_channel_goes_on() -> None:
    ended, failed = await _connections_ended(age=0.5, watch=3.0)
    assert ended >= 2
    assert failed == 0


async def test_a_connection_younger_than_its_age_is_kept() -> None:
    assert await _connections_ended(age=60, watch=1.5) == (0, 0)
