"""A request id claimed by a process that died is taken over at once, not after the
claim's 30 s (#19): each process holds a liveness lease while it lives, and a copy of
the request that finds the claim's holder's lease free runs the command.

The dead holder is a real process (SIGKILLed after claiming); the database is real
(PostgreSQL, or one SQLite file)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from civitas.chassis.auth import Principal, Role
from civitas.chassis.requests import RequestLog, digest_of, keyed
from civitas.errors import Unavailable
from civitas.eventkit import create_read_model_engine
from civitas.funds.v1 import funds_pb2

ADMIN = Principal("admin-1", frozenset({Role.DISTRICT_ADMIN}), ("QH",))
PATH = "/civitas.funds.v1.FundsService/OpenAccount"
SECRET = "a secret the replicas share"
HOLDER = """
import asyncio, sys
from civitas.chassis.auth import Principal, Role
from civitas.chassis.requests import RequestLog, digest_of, keyed
from civitas.eventkit import create_read_model_engine
from civitas.funds.v1 import funds_pb2

async def main(url: str, request_id: str) -> None:
    log = RequestLog(create_read_model_engine(url), "funds", sys.argv[3])
    await log.setup()
    request = funds_pb2.OpenAccountRequest(kind=3, owner_code="QH", key="k", request_id=request_id)
    admin = Principal("admin-1", frozenset({Role.DISTRICT_ADMIN}), ("QH",))
    digest = keyed(log._key, digest_of(sys.argv[4], admin, request))
    assert await asyncio.to_thread(log._try_claim, request_id, digest) is None
    print("claimed", flush=True)
    await asyncio.sleep(600)  # running its command, until it is killed

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


class Servicer:
    async def replay_OpenAccount(self, named: list[str]) -> funds_pb2.OpenAccountResponse:
        return funds_pb2.OpenAccountResponse(account=funds_pb2.Account(account_id=named[0]))


class Command:
    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self) -> funds_pb2.OpenAccountResponse:
        self.runs += 1
        return funds_pb2.OpenAccountResponse(account=funds_pb2.Account(account_id="acc-1"))


def opening(request_id: str) -> funds_pb2.OpenAccountRequest:
    return funds_pb2.OpenAccountRequest(kind=3, owner_code="QH", key="k", request_id=request_id)


@pytest.fixture
def database(read_model_urls: Callable[[str], str]) -> str:
    """A fresh read-model database (PostgreSQL, or a SQLite file) the processes share."""
    return read_model_urls("read")


async def claimed_by_another_process(url: str, request_id: str) -> asyncio.subprocess.Process:
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, url, request_id, SECRET, PATH, stdout=asyncio.subprocess.PIPE
    )
    assert holder.stdout is not None
    line = await asyncio.wait_for(holder.stdout.readline(), 60)
    assert line.strip() == b"claimed", line
    return holder


async def test_a_claim_of_a_process_killed_is_taken_over_at_once(database: str) -> None:
    log = RequestLog(create_read_model_engine(database), "funds", SECRET, wait_seconds=0.5)
    await log.setup()
    request_id = str(uuid.uuid4())
    holder = await claimed_by_another_process(database, request_id)
    try:
        with pytest.raises(Unavailable, match="being run by another replica"):
            await log.once(PATH, ADMIN, opening(request_id), Command(), Servicer())
    finally:
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
    command, started = Command(), time.monotonic()

    reply = await log.once(PATH, ADMIN, opening(request_id), command, Servicer())

    assert command.runs == 1
    assert reply.account.account_id == "acc-1"
    assert time.monotonic() - started < 5  # the claim holds for 30 s
    await log.close()


async def test_a_claim_of_a_live_process_is_not_taken_over(database: str) -> None:
    first = RequestLog(create_read_model_engine(database), "funds", SECRET)
    second = RequestLog(create_read_model_engine(database), "funds", SECRET, wait_seconds=0.3)
    await first.setup()
    await second.setup()
    request = opening(str(uuid.uuid4()))
    digest = keyed(first._key, digest_of(PATH, ADMIN, request))
    assert await asyncio.to_thread(first._try_claim, request.request_id, digest) is None
    command = Command()
    with pytest.raises(Unavailable):
        await second.once(PATH, ADMIN, request, command, Servicer())
    await first.close()  # as when its process ends
    await second.once(PATH, ADMIN, request, command, Servicer())
    assert command.runs == 1
    await second.close()


async def test_claims_of_the_release_before_get_their_holder_column(database: str) -> None:
    engine = create_read_model_engine(database)
    with engine.begin() as conn:  # request_claims as the release before made it
        binary = "BLOB" if conn.dialect.name == "sqlite" else "BYTEA"
        conn.execute(
            sa.text(
                "CREATE TABLE request_claims (service VARCHAR(40), request_id VARCHAR(36), "
                f"digest {binary}, claimed_until TIMESTAMP WITH TIME ZONE, "
                "PRIMARY KEY (service, request_id))"
            )
        )
    log = RequestLog(engine, "funds", SECRET)
    await log.setup()
    command = Command()
    await log.once(PATH, ADMIN, opening(str(uuid.uuid4())), command, Servicer())
    assert command.runs == 1
    assert "holder" in {c["name"] for c in sa.inspect(engine).get_columns("request_claims")}
    await log.close()
