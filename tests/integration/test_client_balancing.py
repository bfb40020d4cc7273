"""The chassis channel over several replicas of a service (real servers, real sockets):
calls go round robin, and after UNAVAILABLE only what is safe to send twice is sent
again, to another replica."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import grpc
import pytest

from civitas.chassis.client import open_channel
from civitas.party_orgs.v1 import party_orgs_pb2 as pb
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as pb_grpc
from civitas.privacy.v1 import privacy_pb2 as privacy_pb
from civitas.privacy.v1 import privacy_pb2_grpc as privacy_grpc
from tests.support.grpc_replicas import Replica
from tests.support.platform import ROOT, free_port

CALLS = 20


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[Replica, Replica]]:
    first, second = await Replica().start(), await Replica().start()
    yield first, second
    await first.stop()
    await second.stop()


@pytest.fixture
def one_stopping(replicas: tuple[Replica, Replica]) -> tuple[Replica, Replica]:
    """The replicas, the first refusing every call UNAVAILABLE (it is going away)."""
    stopping, serving = replicas
    stopping.refusing = True
    return stopping, serving


def target(*ports: int) -> str:
    return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)


def channel_over(*replicas: Replica) -> grpc.aio.Channel:
    """The chassis channel to one target naming every replica."""
    return open_channel(target(*(replica.port for replica in replicas)), lambda: "t")


async def query(*replicas: Replica) -> None:
    """``CALLS`` queries, one after another, through one channel over ``replicas``."""
    async with channel_over(*replicas) as channel:
        stub = pb_grpc.PartyOrgsServiceStub(channel)
        for _ in range(CALLS):
            await stub.GetAdminUnit(pb.GetAdminUnitRequest(code="QH"))


async def test_calls_through_one_target_go_round_robin_to_every_replica(
    replicas: tuple[Replica, Replica],
) -> None:
    first, second = replicas
    await query(first, second)

    assert len(first.received) + len(second.received) == CALLS
    assert len(first.received) >= CALLS // 4
    assert len(second.received) >= CALLS // 4


async def test_a_query_refused_unavailable_is_answered_by_the_other_replica(
    one_stopping: tuple[Replica, Replica],
) -> None:
    stopping, serving = one_stopping
    await query(stopping, serving)

    assert stopping.received  # round robin sent it some first
    assert len(serving.calls_of("GetAdminUnit")) == CALLS


async def test_a_command_with_a_request_id_is_retried_under_the_same_id(
    one_stopping: tuple[Replica, Replica],
) -> None:
    stopping, serving = one_stopping
    async with channel_over(stopping, serving) as channel:
        stub = pb_grpc.PartyOrgsServiceStub(channel)
        for n in range(CALLS):
            await stub.RegisterAdminUnit(pb.RegisterAdminUnitRequest(code=f"QH-{n:02d}"))

    refused = {r.request_id for r in stopping.calls_of("RegisterAdminUnit")}
    answered = [r.request_id for r in serving.calls_of("RegisterAdminUnit")]
    assert refused
    assert len(answered) == len(set(answered)) == CALLS  # one id per command, sent once here
    assert refused <= set(answered)  # the retry carried the id the refused attempt had


async def test_a_command_without_a_request_id_surfaces_unavailable_and_is_not_resent(
    one_stopping: tuple[Replica, Replica],
) -> None:
    stopping, serving = one_stopping
    failed: list[grpc.StatusCode] = []
    async with channel_over(stopping, serving) as channel:
        stub = privacy_grpc.PrivacyServiceStub(channel)
        for n in range(CALLS):
            try:
                await stub.ForgetPerson(privacy_pb.ForgetPersonRequest(person_id=f"p-{n}"))
            except grpc.aio.AioRpcError as error:
                failed.append(error.code())

    sent_to_stopping = {r.person_id for r in stopping.calls_of("ForgetPerson")}
    sent_to_serving = {r.person_id for r in serving.calls_of("ForgetPerson")}
    assert failed
    assert set(failed) == {grpc.StatusCode.UNAVAILABLE}
    assert len(failed) == len(sent_to_stopping)
    assert not sent_to_stopping & sent_to_serving  # never resent to the other replica
    assert len(sent_to_serving) == CALLS - len(failed)


async def test_queries_in_flight_on_a_replica_killed_are_answered_by_the_other() -> None:
    port = free_port()
    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.grpc_replicas",
        str(port),
        "5",  # it answers after 5 s: every call it takes is in flight when it dies
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert doomed.stdout is not None
    survivor = await Replica(delay=0.05).start()
    try:
        serving = await asyncio.wait_for(doomed.stdout.readline(), 30)
        assert serving.decode().startswith("serving")
        async with open_channel(target(port, survivor.port), lambda: "t") as channel:
            stub = pb_grpc.PartyOrgsServiceStub(channel)
            taking = asyncio.ensure_future(doomed.stdout.readline())
            calls = []  # one every 20 ms until the doomed replica has taken one
            while not taking.done() and len(calls) < 500:
                calls.append(stub.GetAdminUnit(pb.GetAdminUnitRequest(code="QH")))
                await asyncio.wait([taking], timeout=0.02)
            taken = await taking
            doomed.send_signal(signal.SIGKILL)
            replies = await asyncio.wait_for(asyncio.gather(*calls), 10)
    finally:
        if doomed.returncode is None:
            doomed.kill()
        await doomed.wait()
        await survivor.stop()

    assert taken.decode().strip() == "called GetAdminUnit"  # it had calls when killed
    assert len(replies) == len(calls)  # every one answered: none failed
    assert len(survivor.calls_of("GetAdminUnit")) == len(calls)
