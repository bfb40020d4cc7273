"""A command run again under its request id, after its replica died between storing
its events and the request log's write, stores nothing twice and answers OK (#19).

The crash is the request log's row taken away after a run (what a replica SIGKILLed
before writing it leaves: the events, no row, its claim past its time). The store is
real (SQLite, PostgreSQL, and the in-memory one); the request log is a SQLite file."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from civitas.chassis.auth import Principal, Role
from civitas.chassis.requests import RequestLog, request_log
from civitas.eventkit import EventStore, Repository, create_read_model_engine
from civitas.funds.v1 import funds_pb2
from tests.support.accounts import Account, InsufficientFunds

ADMIN = Principal("admin-1", frozenset({Role.DISTRICT_ADMIN}), ("QH",))
PATH = "/civitas.funds.v1.FundsService/OpenAccount"


class Servicer:
    async def replay_OpenAccount(self, named: list[str]) -> funds_pb2.OpenAccountResponse:
        return funds_pb2.OpenAccountResponse(account=funds_pb2.Account(account_id=named[0]))


def command(
    repository: Repository[Account], change: Callable[[Account], object]
) -> Callable[[], object]:
    """A command on account a1 that counts its runs; replies naming the account."""

    async def run() -> funds_pb2.OpenAccountResponse:
        run.runs += 1  # type: ignore[attr-defined]
        account = await repository.update("a1", change)
        return funds_pb2.OpenAccountResponse(
            account=funds_pb2.Account(account_id=account.id, name=str(account.balance_fen))
        )

    run.runs = 0  # type: ignore[attr-defined]
    return run


@pytest.fixture
async def log(tmp_path: Path) -> RequestLog:
    requests = RequestLog(create_read_model_engine(f"sqlite:///{tmp_path}/read.db"), "funds", "s")
    await requests.setup()
    return requests


def crash_before_the_log(log: RequestLog, request_id: str) -> None:
    """What a replica killed after the append and before the log's write leaves."""
    with log.engine.begin() as conn:
        conn.execute(sa.delete(request_log).where(request_log.c.request_id == request_id))


def request(request_id: str) -> funds_pb2.OpenAccountRequest:
    return funds_pb2.OpenAccountRequest(kind=3, owner_code="QH", key="k", request_id=request_id)


async def opened(store: EventStore) -> Repository[Account]:
    repository = Repository(store, Account)
    await repository.save(Account.open("a1", owner="王", community="QH-03-07"))
    return repository


async def test_a_command_run_again_after_its_stream_moved_is_stored_once(
    store: EventStore, log: RequestLog
) -> None:
    repository = await opened(store)
    request_id, deposit = str(uuid.uuid4()), command(repository, lambda a: a.deposit(100))
    await log.once(PATH, ADMIN, request(request_id), deposit, Servicer())
    crash_before_the_log(log, request_id)
    await repository.update("a1", lambda a: a.deposit(7))  # another command moves the stream

    reply = await log.once(PATH, ADMIN, request(request_id), deposit, Servicer())

    assert deposit.runs == 2  # type: ignore[attr-defined]
    assert reply.account.account_id == "a1"
    assert reply.account.name == "107"
    assert [e.type for e in await store.read_stream("account-a1")] == [
        "AccountOpened",
        "MoneyDeposited",
        "MoneyDeposited",
    ]
    assert (await repository.get("a1")).balance_fen == 107


async def test_a_command_its_rules_refuse_on_the_rerun_is_answered_as_done(
    store: EventStore, log: RequestLog
) -> None:
    repository = await opened(store)
    await repository.update("a1", lambda a: a.deposit(100))
    request_id, withdraw = str(uuid.uuid4()), command(repository, lambda a: a.withdraw(100))
    await log.once(PATH, ADMIN, request(request_id), withdraw, Servicer())
    crash_before_the_log(log, request_id)

    reply = await log.once(PATH, ADMIN, request(request_id), withdraw, Servicer())

    assert reply.account.name == "0"
    assert len(await store.read_stream("account-a1")) == 3
    with pytest.raises(InsufficientFunds):  # another request's withdrawal is still refused
        await log.once(PATH, ADMIN, request(str(uuid.uuid4())), withdraw, Servicer())


async def test_a_command_checked_before_its_update_is_answered_as_done_on_the_rerun(
    store: EventStore, log: RequestLog
) -> None:
    """As DispatchCase: the application checks the loaded aggregate, then updates it."""
    repository = await opened(store)
    await repository.update("a1", lambda a: a.deposit(100))

    async def withdraw_all() -> funds_pb2.OpenAccountResponse:
        account = await repository.load("a1", "account")
        if account.balance_fen < 100:
            raise InsufficientFunds("checked before the update")
        account = await repository.update("a1", lambda a: a.withdraw(100), loaded=account)
        return funds_pb2.OpenAccountResponse(
            account=funds_pb2.Account(account_id=account.id, name=str(account.balance_fen))
        )

    request_id = str(uuid.uuid4())
    await log.once(PATH, ADMIN, request(request_id), withdraw_all, Servicer())
    crash_before_the_log(log, request_id)
    await repository.update("a1", lambda a: a.deposit(5))

    reply = await log.once(PATH, ADMIN, request(request_id), withdraw_all, Servicer())

    assert reply.account.name == "5"  # the account as it is now, withdrawn once
    assert [e.type for e in await store.read_stream("account-a1")].count("MoneyWithdrawn") == 1


async def test_a_refused_rerun_whose_first_run_a_snapshot_covers_is_answered_as_done(
    store: EventStore, log: RequestLog
) -> None:
    """The loaded state cannot leave out what a snapshot covers: the refusal is checked
    against the stream's latest events instead."""
    repository = await opened(store)
    await repository.update("a1", lambda a: a.deposit(100))
    request_id, withdraw = str(uuid.uuid4()), command(repository, lambda a: a.withdraw(100))
    await log.once(PATH, ADMIN, request(request_id), withdraw, Servicer())
    crash_before_the_log(log, request_id)
    for _ in range(60):  # past a snapshot (every 50 events)
        await repository.update("a1", lambda a: a.deposit(1))

    reply = await log.once(PATH, ADMIN, request(request_id), withdraw, Servicer())

    assert reply.account.name == "60"
    assert await store.read_stream("account_snapshot-a1")
    assert [e.type for e in await store.read_stream("account-a1")].count("MoneyWithdrawn") == 1
