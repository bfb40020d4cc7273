"""Snapshots are bound to the events they summarize: a snapshot whose covered event
the stream does not have as it says is ignored (rebuilt from events) and reported."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from civitas.eventkit import EventStore, NewEvent, Repository, StreamState
from tests.support.accounts import Account

PLANTED = {"owner": "王", "community": "QH-03-07", "balance_fen": 1000, "is_open": True}


def rejected(reason: str) -> float:
    labels = {"category": "account", "reason": reason}
    return REGISTRY.get_sample_value("civitas_snapshots_rejected_total", labels) or 0.0


async def saved_account(store: EventStore) -> Repository[Account]:
    repository = Repository(store, Account)
    account = Account.open("a1", owner="王", community="QH-03-07")
    account.deposit(5)
    await repository.save(account)
    return repository


async def test_a_snapshot_the_repository_takes_is_bound_and_trusted(store: EventStore) -> None:
    repository = Repository(store, Account)
    account = Account.open("a1", owner="王", community="QH-03-07")
    for _ in range(Account.snapshot_every):
        account.deposit(1)
    await repository.save(account)
    [snapshot] = await store.read_stream("account_snapshot-a1")
    [covered] = await store.read_stream("account-a1", from_version=account.version)
    before = rejected("mismatch") + rejected("unbound")

    loaded = await repository.get("a1")

    assert snapshot.data["covers"] == {"version": account.version, "hash": covered.hash.hex()}
    assert loaded.balance_fen == Account.snapshot_every
    assert rejected("mismatch") + rejected("unbound") == before
    assert (await store.verify()).intact


@pytest.mark.parametrize(
    ("covers", "reason"),
    [({"version": 1, "hash": "00" * 32}, "mismatch"), (None, "unbound")],
    ids=["bound to another hash", "unbound (from before bindings)"],
)
async def test_a_forged_or_unbound_snapshot_is_ignored_and_reported(
    store: EventStore, caplog: pytest.LogCaptureFixture, covers: object, reason: str
) -> None:
    repository = await saved_account(store)
    data = {"version": 1, "snapshot_version": 1, "state": PLANTED}
    if covers is not None:
        data["covers"] = covers
    await store.append("account_snapshot-a1", [NewEvent("Snapshot", data)], StreamState.ANY)
    before = rejected(reason)

    with caplog.at_level(logging.WARNING):
        loaded = await repository.get("a1")

    assert loaded.balance_fen == 5  # rebuilt from the events, not the planted 1000
    assert rejected(reason) == before + 1
    warned = any("not bound to the stored events" in r.getMessage() for r in caplog.records)
    assert warned == (reason == "mismatch")
    report = await store.verify()
    assert report.intact == (reason == "unbound")
    assert report.unbound_snapshots == (reason == "unbound")
