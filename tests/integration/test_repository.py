"""The repository on every event-store backend: concurrency, snapshots, history."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from civitas.errors import NotFound, RuleViolation
from civitas.eventkit import (
    AggregateNotFound,
    ConcurrencyError,
    EventStore,
    ManualClock,
    Metadata,
    NewEvent,
    Repository,
    StreamState,
)
from tests.support.accounts import Account


async def test_a_saved_aggregate_loads_with_the_same_state_and_metadata(
    store: EventStore,
) -> None:
    repository = Repository(store, Account)
    account = Account.open("a1", owner="王", community="QH-03-07")
    account.deposit(300)

    await repository.save(account, Metadata(actor="staff-1", correlation_id="c-1"))
    loaded = await repository.get("a1")

    assert loaded.snapshot_state() == account.snapshot_state()
    assert loaded.version == 1
    assert {(e.actor, e.correlation_id) for e in await store.read_stream("account-a1")} == {
        ("staff-1", "c-1")
    }


async def test_a_concurrent_change_makes_the_second_save_fail_and_store_nothing(
    store: EventStore,
) -> None:
    repository = Repository(store, Account)
    await repository.save(Account.open("a1", owner="王", community="QH-03-07"))
    first, second = await repository.get("a1"), await repository.get("a1")
    first.deposit(100)
    second.deposit(999)

    await repository.save(first)
    with pytest.raises(ConcurrencyError):
        await repository.save(second)

    assert (await repository.get("a1")).balance_fen == 100


async def test_updates_of_one_aggregate_in_one_process_take_turns_and_never_conflict(
    store: EventStore,
) -> None:
    repository = Repository(store, Account)
    await repository.save(Account.open("a1", owner="王", community="QH-03-07"))

    await asyncio.gather(
        *(repository.update("a1", lambda a: a.deposit(1), attempts=1) for _ in range(40))
    )

    assert (await repository.get("a1")).balance_fen == 40


async def test_updates_from_two_processes_retry_on_conflict_until_all_land(
    store: EventStore,
) -> None:
    here, there = Repository(store, Account), Repository(store, Account)  # as two processes
    await here.save(Account.open("a1", owner="王", community="QH-03-07"))

    await asyncio.gather(
        *(r.update("a1", lambda a: a.deposit(1)) for _ in range(20) for r in (here, there))
    )

    assert (await here.get("a1")).balance_fen == 40


async def test_opening_the_same_account_twice_is_a_conflict(store: EventStore) -> None:
    repository = Repository(store, Account)
    await repository.save(Account.open("a1", owner="王", community="QH-03-07"))

    with pytest.raises(ConcurrencyError):
        await repository.save(Account.open("a1", owner="李", community="QH-01-01"))

    assert (await repository.get("a1")).owner == "王"


async def test_loading_an_unknown_aggregate_raises_not_found(store: EventStore) -> None:
    with pytest.raises(AggregateNotFound, match="account-nobody"):
        await Repository(store, Account).get("nobody")


async def test_find_gives_none_for_an_unknown_aggregate_and_the_state_for_a_known_one(
    store: EventStore,
) -> None:
    repository = Repository(store, Account)
    missing = await repository.find("a1")
    await repository.save(Account.open("a1", owner="王", community="QH-01-01"))
    found = await repository.find("a1")

    assert missing is None
    assert found is not None
    assert found.owner == "王"


async def test_load_refuses_an_unknown_aggregate_naming_its_kind_and_id(
    store: EventStore,
) -> None:
    repository = Repository(store, Account)

    with pytest.raises(NotFound, match=r"^account a1 does not exist$"):
        await repository.load("a1", "account")
    with pytest.raises(RuleViolation, match=r"^payee a1 does not exist$"):
        await repository.load("a1", "payee", RuleViolation)
    with pytest.raises(NotFound, match=r"^account a1 does not exist$"):
        await repository.update("a1", lambda a: a.deposit(1), kind="account")


async def test_create_or_fetch_saves_a_new_aggregate_or_gives_the_one_stored_first(
    store: EventStore,
) -> None:
    repository = Repository(store, Account)
    first = Account.open("a1", owner="王", community="QH-03-07")
    second = Account.open("a1", owner="李", community="QH-01-01")

    assert await repository.create_or_fetch(first) is first
    stored = await repository.create_or_fetch(second)

    assert stored is not second
    assert stored.owner == "王"
    assert len(await store.read_stream("account-a1")) == 1


async def test_a_long_stream_loads_from_its_snapshot_with_the_same_state(
    store: EventStore,
) -> None:
    repository = Repository(store, Account)
    account = Account.open("a1", owner="王", community="QH-03-07")
    await repository.save(account)
    for amount in range(1, 130):
        account = await repository.get("a1")
        account.deposit(amount)
        await repository.save(account)

    with_snapshot = await repository.get("a1")
    without = await Repository(store, Account, use_snapshots=False).get("a1")
    snapshots = await store.read_stream("account_snapshot-a1")

    assert with_snapshot.snapshot_state() == without.snapshot_state()
    assert with_snapshot.version == without.version == 129
    assert [s.data["version"] for s in snapshots] == [49, 99]


async def test_a_snapshot_of_an_older_shape_is_ignored(store: EventStore) -> None:
    repository = Repository(store, Account)
    account = Account.open("a1", owner="王", community="QH-03-07")
    account.deposit(7)
    await repository.save(account)
    stale = {"version": 1, "snapshot_version": 0, "state": {"balance_fen": 10**9}}
    await store.append("account_snapshot-a1", [NewEvent("Snapshot", stale)], StreamState.ANY)

    assert (await repository.get("a1")).balance_fen == 7


async def test_an_old_event_shape_in_the_store_loads_through_its_upcaster(
    store: EventStore,
) -> None:
    old = NewEvent("AccountOpened", {"owner": "李"}, schema_version=1)
    await store.append("account-old", [old], StreamState.NO_STREAM)

    account = await Repository(store, Account).get("old")

    assert (account.owner, account.community) == ("李", "unknown")


async def test_history_gives_the_state_as_of_a_version_or_a_moment(
    store: EventStore, clock: ManualClock
) -> None:
    repository = Repository(store, Account)
    account = Account.open("a1", owner="王", community="QH-03-07")
    account.deposit(100)
    await repository.save(account)
    before_withdrawal = clock.now()
    clock.advance(timedelta(days=1))
    account.withdraw(40)
    await repository.save(account)

    assert (await repository.get_as_of("a1", version=1)).balance_fen == 100
    assert (await repository.get_as_of("a1", moment=before_withdrawal)).balance_fen == 100
    assert (await repository.get_as_of("a1")).balance_fen == 60


async def test_loading_starts_from_the_latest_snapshot_and_reads_only_what_follows(
    store: EventStore,
) -> None:
    repository = Repository(store, Account)
    account = Account.open("a1", owner="王", community="QH-03-07")
    account.deposit(5)
    await repository.save(account)
    planted = {"owner": "王", "community": "QH-03-07", "balance_fen": 1000, "is_open": True}
    [_, covered] = await store.read_stream("account-a1")
    covers = {"version": 1, "hash": covered.hash.hex()}  # bound to the stream as stored
    snapshot = {"version": 1, "covers": covers, "snapshot_version": 1, "state": planted}
    await store.append("account_snapshot-a1", [NewEvent("Snapshot", snapshot)], StreamState.ANY)
    account = await repository.get("a1")
    account.deposit(1)
    await repository.save(account)

    loaded = await repository.get("a1")

    assert loaded.balance_fen == 1001  # the planted state plus the one event after it
    assert (await Repository(store, Account, use_snapshots=False).get("a1")).balance_fen == 6
