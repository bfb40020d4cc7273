"""Aggregates, events and upcasters, without any store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from civitas.eventkit import DomainEvent, ManualClock, UnknownEventType, natural_id, registry
from tests.support.accounts import (
    Account,
    AccountClosed,
    AccountOpened,
    InsufficientFunds,
    MoneyDeposited,
)


def test_a_command_records_one_event_and_changes_state_through_it() -> None:
    account = Account.open("a1", owner="王", community="QH-03-07")
    account.deposit(500)

    pending = account.collect_pending()
    assert [type(e) for e in pending] == [AccountOpened, MoneyDeposited]
    assert (account.balance_fen, account.version) == (500, 1)


def test_replaying_the_recorded_events_rebuilds_the_same_state() -> None:
    account = Account.open("a1", owner="王", community="QH-03-07")
    account.deposit(500)
    account.withdraw(200)

    replayed = Account.replay("a1", account.collect_pending())

    assert replayed.snapshot_state() == account.snapshot_state()
    assert replayed.version == account.version


def test_a_guard_refuses_a_command_and_records_nothing() -> None:
    account = Account.open("a1", owner="王", community="QH-03-07")
    account.deposit(100)

    with pytest.raises(InsufficientFunds):
        account.withdraw(101)
    account.close("merged")
    with pytest.raises(AccountClosed):
        account.deposit(1)

    assert len(account.collect_pending()) == 3
    assert account.balance_fen == 100


def test_an_old_event_shape_is_read_through_its_upcaster() -> None:
    event = registry.decode("AccountOpened", 1, {"owner": "李"})

    assert event == AccountOpened(owner="李", community="unknown")


def test_decoding_refuses_unknown_types_and_versions_newer_than_the_code() -> None:
    with pytest.raises(UnknownEventType, match="no event class"):
        registry.decode("NeverDefined", 1, {})
    with pytest.raises(UnknownEventType, match="newer than this code"):
        registry.decode("AccountOpened", 3, {"owner": "李", "community": "x"})


def test_two_event_classes_cannot_share_a_type_name() -> None:
    with pytest.raises(TypeError, match="is taken"):

        class Impostor(DomainEvent):
            event_type = "MoneyDeposited"


def test_events_are_immutable_and_refuse_unknown_fields() -> None:
    event = MoneyDeposited(amount_fen=5)
    with pytest.raises(ValueError, match="frozen"):
        event.amount_fen = 6  # type: ignore[misc]
    with pytest.raises(ValueError, match="Extra inputs"):
        MoneyDeposited(amount_fen=5, note="x")  # type: ignore[call-arg]


def test_natural_ids_are_stable_for_a_key_and_differ_between_keys() -> None:
    first = natural_id("volunteer-of-member", "m-42")

    assert first == natural_id("volunteer-of-member", "m-42")
    assert first != natural_id("volunteer-of-member", "m-43")
    assert first != natural_id("certificate", "m-42")
    assert isinstance(first, uuid.UUID)


def test_the_manual_clock_moves_only_when_told_and_stays_in_utc() -> None:
    clock = ManualClock(datetime(2026, 1, 1, 8, tzinfo=UTC))
    before = clock.now()

    clock.advance(timedelta(hours=2))

    assert clock.now() - before == timedelta(hours=2)
    assert clock.now().tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 1, 1))


def test_new_uuids_are_version_4_and_do_not_repeat() -> None:
    from civitas.eventkit.ids import new_uuid

    drawn = {new_uuid() for _ in range(10_000)}

    assert len(drawn) == 10_000
    assert {u.version for u in drawn} == {4}
    assert {u.variant for u in drawn} == {uuid.RFC_4122}
