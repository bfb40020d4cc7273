"""One request id, two replicas: the request log claims the id in the database they
share, so its command runs once however many replicas receive it (#19).

Two :class:`RequestLog` instances on two engines stand for two replicas' processes; the
database is real (PostgreSQL, one schema; or one SQLite file)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from civitas.chassis.auth import Principal, Role
from civitas.chassis.requests import RequestLog, digest_of, keyed
from civitas.errors import AlreadyExists, Unavailable
from civitas.eventkit import create_read_model_engine
from civitas.funds.v1 import funds_pb2
from tests.conftest import POSTGRES_URL, drop_schema, missing_dependency, postgres_reachable

ADMIN = Principal("admin-1", frozenset({Role.DISTRICT_ADMIN}), ("QH",))
PATH = "/civitas.funds.v1.FundsService/OpenAccount"
SECRET = "a secret the replicas share"


class Servicer:
    """Replies to a repeated OpenAccount with the account the first one named."""

    async def replay_OpenAccount(self, named: list[str]) -> funds_pb2.OpenAccountResponse:
        return funds_pb2.OpenAccountResponse(account=funds_pb2.Account(account_id=named[0]))


class Command:
    """A command that counts its runs and takes ``seconds`` to run (or fails)."""

    def __init__(self, seconds: float = 0.0, fails: bool = False) -> None:
        self.seconds, self.fails, self.runs = seconds, fails, 0

    async def __call__(self) -> funds_pb2.OpenAccountResponse:
        self.runs += 1
        await asyncio.sleep(self.seconds)
        if self.fails:
            raise RuntimeError("the store refused the append")
        account = funds_pb2.Account(account_id=str(uuid.uuid4()))
        return funds_pb2.OpenAccountResponse(account=account)


def opening(request_id: str, name: str = "银发") -> funds_pb2.OpenAccountRequest:
    return funds_pb2.OpenAccountRequest(
        kind=3, owner_code="QH", key="yinfa", name=name, request_id=request_id
    )


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh read-model database the two replicas share."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/read.db"
        return
    if not await postgres_reachable():
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    await drop_schema(schema)


async def replicas(url: str, **timing: float) -> tuple[RequestLog, RequestLog]:
    """Two replicas' request logs: each its own engine, one database."""
    logs = []
    for _ in range(2):
        log = RequestLog(create_read_model_engine(url), "funds", SECRET, **timing)
        await log.setup()
        logs.append(log)
    return logs[0], logs[1]


async def test_one_request_id_on_two_replicas_at_once_runs_once_and_both_get_its_reply(
    database: str,
) -> None:
    first, second = await replicas(database)
    request, command = opening(str(uuid.uuid4())), Command(seconds=0.3)
    replies = await asyncio.gather(
        first.once(PATH, ADMIN, request, command, Servicer()),
        second.once(PATH, ADMIN, request, command, Servicer()),
    )
    assert command.runs == 1
    assert replies[0] == replies[1]
    assert replies[0].account.account_id


async def test_another_request_under_a_claimed_id_is_refused_and_nothing_runs(
    database: str,
) -> None:
    first, second = await replicas(database)
    request_id, command, other = str(uuid.uuid4()), Command(seconds=0.5), Command()
    running = asyncio.create_task(first.once(PATH, ADMIN, opening(request_id), command, Servicer()))
    await asyncio.sleep(0.2)
    with pytest.raises(AlreadyExists):
        await second.once(PATH, ADMIN, opening(request_id, name="另一个"), other, Servicer())
    await running
    assert (command.runs, other.runs) == (1, 0)


async def test_a_claim_whose_holder_vanished_is_refused_until_its_time_then_taken_over(
    database: str,
) -> None:
    first, second = await replicas(database, claim_seconds=1.0, wait_seconds=0.2)
    request = opening(str(uuid.uuid4()))
    # The holder claims, then dies before its command ends: its claim stays behind.
    digest = keyed(first._key, digest_of(PATH, ADMIN, request))
    claimed_at = time.monotonic()
    assert await asyncio.to_thread(first._try_claim, request.request_id, digest) is None
    command = Command()
    with pytest.raises(Unavailable, match="being run by another replica"):
        await second.once(PATH, ADMIN, request, command, Servicer())
    assert command.runs == 0
    await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - claimed_at)) + 0.1)
    reply = await second.once(PATH, ADMIN, request, command, Servicer())
    assert command.runs == 1
    again = await first.once(PATH, ADMIN, request, Command(), Servicer())
    assert again == reply


async def test_a_failed_commands_retry_runs_again_on_another_replica(database: str) -> None:
    first, second = await replicas(database)
    request, failing, retried = opening(str(uuid.uuid4())), Command(fails=True), Command()
    with pytest.raises(RuntimeError):
        await first.once(PATH, ADMIN, request, failing, Servicer())
    reply = await second.once(PATH, ADMIN, request, retried, Servicer())
    assert (failing.runs, retried.runs) == (1, 1)
    assert reply.account.account_id


async def test_many_request_ids_on_two_replicas_at_once_each_run_once(database: str) -> None:
    """Claims made together share a transaction (group commit); each still counts alone."""
    first, second = await replicas(database)
    requests = [opening(str(uuid.uuid4())) for _ in range(20)]
    commands = [Command(seconds=0.05) for _ in requests]
    replies = await asyncio.gather(
        *(
            log.once(PATH, ADMIN, request, command, Servicer())
            for request, command in zip(requests, commands, strict=True)
            for log in (first, second)
        )
    )
    assert [command.runs for command in commands] == [1] * len(requests)
    assert replies[0::2] == replies[1::2]
    again = await asyncio.gather(
        *(first.once(PATH, ADMIN, request, Command(), Servicer()) for request in requests)
    )
    assert again == replies[0::2]
