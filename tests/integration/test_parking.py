"""Poison events on the store feed: parked with their reason, in each stream's order,
never skipped and never blocking other streams; retried or dropped by an operator;
and a consumer that does not advance shows it in its lag and its alert."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from civitas.cli import main
from civitas.eventkit import (
    EventFilter,
    NewEvent,
    ProjectionRunner,
    RecordedEvent,
    SqliteEventStore,
    StoreFeed,
    StreamState,
    create_read_model_engine,
    parking,
)
from civitas.eventkit.process import ProcessManager, ProcessManagerRunner, reacts
from civitas.replay import swap
from tests.support.accounts import BalancesProjection
from tests.support.parking import (
    BROKEN,
    QUICK,
    BrokenOnOneStream,
    Stalled,
    StampedFeed,
    amounts_are_integers,
    balances_of,
    broken_stream_parked,
    deposit,
    forge_far_ahead,
    kinds,
    open_accounts,
    parked_of,
    rebuilt,
    running,
)
from tests.support.processes import eventually
from tests.support.prometheus import RULES, signal_of


async def test_a_handler_failing_on_one_stream_parks_it_while_others_flow_and_a_retry_applies_it(
    tmp_path: Path, read_model_urls: Callable[[str], str]
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await open_accounts(store, accounts=4, movements=3)
    engine = create_read_model_engine(read_model_urls("live"))
    projection = BrokenOnOneStream()
    runner = ProjectionRunner(projection, StoreFeed(store, batch_size=5), engine, retrying=QUICK)
    async with running(runner):
        await deposit(store, "account-0", 100, 3)
        await deposit(store, BROKEN, 7, 3)
        await deposit(store, "account-2", 1000, 3)
        head = await store.head_position()

        async def moved_on() -> bool:
            return await runner.position() == head

        await eventually(moved_on, "the runner to pass the failing stream by", 30)
        balances = {row[0]: row[2] for row in balances_of(engine)}
        assert balances == {"0": 106, "1": 1, "2": 1006, "3": 6}
        assert kinds(parked_of(engine, runner.name)) == [
            (BROKEN, 2, "failed", 3),
            (BROKEN, 3, "behind", 0),
            (BROKEN, 4, "behind", 0),
        ]
        assert parked_of(engine, runner.name)[0].error == (
            "ValueError: cannot apply MoneyDeposited to account-1"
        )
        assert await runner.observe_lag() == (0, 0.0)  # the other streams are not held up
        assert REGISTRY.get_sample_value("civitas_parked_events", {"consumer": runner.name}) == 3

        projection.broken = False  # the fix is deployed
        assert main(["dlq", "retry", "--consumer", "x"]) == 2  # no such consumer
        with engine.begin() as conn:
            assert parking.request_retry(conn, runner.name, BROKEN) == 3

        async def retried() -> bool:  # by the running consumer's own poll
            return not parked_of(engine, runner.name, parking.OPEN)

        await eventually(retried, "the running consumer to apply the retried sequence", 30)
    assert balances_of(engine) == await rebuilt(store, tmp_path)
    assert {r.state for r in parked_of(engine, runner.name)} == {parking.APPLIED}
    engine.dispose()
    await store.close()


async def forged_after_two_deposits(tmp_path: Path) -> SqliteEventStore:
    """Three accounts of two deposits; then an insider writes ``account-1``'s version
    1000 into the store's file, and two genuine deposits follow (versions 3 and 4)."""
    store = SqliteEventStore(tmp_path / "events.db")
    await open_accounts(store, accounts=3, movements=2)
    forge_far_ahead(tmp_path / "events.db", BROKEN, version=1000, amount=500_000)
    await deposit(store, BROKEN, 5, 2)
    await deposit(store, BROKEN, 6, 3)
    return store


async def test_a_forged_far_ahead_event_is_parked_and_the_genuine_ones_are_applied(
    tmp_path: Path,
) -> None:
    store = await forged_after_two_deposits(tmp_path)
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    feed = StoreFeed(store, complete_streams=True)  # every event of each stream: gaps show

    await ProjectionRunner(BalancesProjection(), feed, engine).catch_up()

    [forged] = parked_of(engine, "account_balances")
    assert (forged.stream_version, forged.reason) == (1000, "gap: version 1000, expected 3")
    assert {row[0]: row[2] for row in balances_of(engine)}["1"] == 1 + 2 + 5 + 6
    engine.dispose()
    await store.close()


class AccountTimeline(BalancesProjection):
    """Balances, and every account event in a timeline, handler or not: it reads by
    category, as insights' case facts read every case event."""

    def __init__(self) -> None:
        self.timeline: list[str] = []

    @property
    def filter(self) -> EventFilter:
        return EventFilter.of(categories=["account"])

    def apply_all(self, events: list[RecordedEvent], conn: sa.Connection) -> None:
        self.timeline += [event.type for event in events]
        super().apply_all(events, conn)


async def test_on_a_feed_of_whole_streams_the_consumer_s_own_filter_picks_what_it_applies(
    tmp_path: Path,
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await open_accounts(store, accounts=2, movements=1)
    closed = [NewEvent("AccountWasClosed", {"reason": "moved"})]  # no handler of its own
    await store.append("account-0", closed, 1)
    await store.append("other-9", [NewEvent("Noted", {})], StreamState.NO_STREAM)
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    projection = AccountTimeline()

    await ProjectionRunner(projection, StoreFeed(store, complete_streams=True), engine).catch_up()

    assert sorted(projection.timeline) == sorted(
        ["AccountOpened", "MoneyDeposited"] * 2 + ["AccountWasClosed"]
    )
    assert not parked_of(engine, "account_balances")
    engine.dispose()
    await store.close()


async def test_after_a_forged_event_a_feed_that_filters_types_parks_the_genuine_ones_unskipped(
    tmp_path: Path,
) -> None:
    """The store feed filters types in SQL, so it cannot see the gap and the forged
    event is applied; the genuine events after it are parked (out of order), never
    passed over as if applied."""
    store = await forged_after_two_deposits(tmp_path)
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")

    await ProjectionRunner(BalancesProjection(), StoreFeed(store), engine).catch_up()

    parked = parked_of(engine, "account_balances")
    assert kinds(parked) == [(BROKEN, 3, "out_of_order", 0), (BROKEN, 4, "behind", 0)]
    assert parked[0].reason == "out_of_order: version 3 after version 1000 was handled"
    engine.dispose()
    await store.close()


async def test_a_retry_never_marks_applied_an_event_whose_version_another_event_took(
    tmp_path: Path,
) -> None:
    store = await forged_after_two_deposits(tmp_path)
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    runner = ProjectionRunner(BalancesProjection(), StoreFeed(store), engine)
    await runner.catch_up()  # the forged 1000 applied, the genuine 3 and 4 parked
    with engine.begin() as conn:
        assert parking.request_retry(conn, runner.name, BROKEN) == 2

    assert await runner.retry_parked() == 0

    out_of_order, behind = parked_of(engine, runner.name)
    assert (out_of_order.state, behind.state) == (parking.PARKED, parking.PARKED)
    assert out_of_order.error is not None
    assert "version 3 was handled already" in out_of_order.error
    engine.dispose()
    await store.close()


async def test_a_rebuild_after_a_store_was_reset_forgets_the_old_store_s_origin(
    tmp_path: Path,
) -> None:
    old = SqliteEventStore(tmp_path / "old.db")
    await open_accounts(old, accounts=2, movements=1)
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    await ProjectionRunner(BalancesProjection(), StampedFeed(old), engine).catch_up()
    new = SqliteEventStore(tmp_path / "new.db")  # a deliberate reset: new history
    await open_accounts(new, accounts=2, movements=2)

    await ProjectionRunner(BalancesProjection(), StampedFeed(new), engine).rebuild()

    assert not parked_of(engine, "account_balances")
    assert balances_of(engine) == await rebuilt(new, tmp_path)
    with engine.connect() as conn:
        assert parking.pinned_origins(conn, "account_balances") == {"account": await new.identity()}
    engine.dispose()
    await old.close()
    await new.close()


async def test_a_message_never_decoded_never_holds_up_the_retry_of_the_stream_it_claims(
    tmp_path: Path, read_model_urls: Callable[[str], str]
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    engine = create_read_model_engine(read_model_urls("live"))
    projection = BrokenOnOneStream()
    runner = await broken_stream_parked(store, engine, projection)
    garbage = parking.Undecodable("events[0]@7", BROKEN, b"\xff", "not an event envelope")
    with engine.begin() as conn:
        parking.park_undecodable(conn, runner.name, garbage)
    projection.broken = False
    with engine.begin() as conn:
        assert parking.request_retry(conn, runner.name, BROKEN) == 2

    assert await runner.retry_parked() == 1

    assert balances_of(engine) == await rebuilt(store, tmp_path)
    applied, undecodable = parked_of(engine, runner.name)
    assert (applied.stream_version, applied.state) == (2, parking.APPLIED)
    assert (undecodable.stream_version, undecodable.state) == (None, parking.PARKED)
    assert undecodable.error == "not an event: it can only be dropped"
    engine.dispose()
    await store.close()


async def test_what_a_message_claims_is_cut_to_the_parking_columns_and_the_row_says_so(
    read_model_urls: Callable[[str], str],
) -> None:
    engine = create_read_model_engine(read_model_urls("live"))
    claimed = "account-" + "9" * 300
    with engine.begin() as conn:
        parking.parking.create_all(conn)
        message = parking.Undecodable("events[0]@7", claimed, b"\x00", "not\x00 an envelope")
        parking.park_undecodable(conn, "account_balances", message)

    [row] = parked_of(engine, "account_balances")
    assert row.stream_id == claimed[:255]
    assert row.reason == (
        "undecodable: not\ufffd an envelope (stream_id cut to 255 of its 308 characters)"
    )
    engine.dispose()


async def test_an_event_that_cannot_be_parked_is_kept_as_a_message_and_the_batch_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await open_accounts(store, accounts=2, movements=2)
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    runner = ProjectionRunner(BrokenOnOneStream(), StoreFeed(store), engine, retrying=QUICK)
    park = parking.park

    def fits_no_column(conn: sa.Connection, consumer: str, event: RecordedEvent, why: Any) -> None:
        if event.stream_id == BROKEN:  # as a value a column of PostgreSQL refuses
            raise sa.exc.DataError("INSERT", {}, ValueError("value too long"))
        park(conn, consumer, event, why)

    monkeypatch.setattr(parking, "park", fits_no_column)

    await runner.catch_up()

    assert await runner.position() == await store.head_position()
    assert {row[0]: row[2] for row in balances_of(engine)} == {"0": 3, "1": 1}
    [kept] = parked_of(engine, runner.name)
    assert (kept.stream_id, kept.stream_version) == (BROKEN, None)
    assert kept.reason.startswith("undecodable: could not be parked as an event: DataError")
    engine.dispose()
    await store.close()


async def test_an_invalid_event_is_parked_dropped_with_a_reason_and_the_rest_retried(
    tmp_path: Path, read_model_urls: Callable[[str], str]
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await open_accounts(store, accounts=3, movements=1)
    await deposit(store, BROKEN, "lots", 1)  # not what the schema allows
    await deposit(store, BROKEN, 5, 2)
    await deposit(store, "account-0", 7, 1)
    engine = create_read_model_engine(read_model_urls("live"))
    runner = ProjectionRunner(
        BalancesProjection(), StoreFeed(store), engine, check=amounts_are_integers
    )

    await runner.catch_up()

    invalid, behind = parked_of(engine, runner.name)
    assert invalid.reason == "invalid: data.amount_fen: 'lots' is not an integer"
    assert behind.reason == "behind: account-1@2 is parked"
    assert {row[0]: row[2] for row in balances_of(engine)} == {"0": 8, "1": 1, "2": 1}
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="reason"):
            parking.drop(conn, runner.name, None, "ops", " ", ids=[invalid.id])
        assert parking.drop(conn, runner.name, None, "ops", "amount lost", ids=[invalid.id]) == 1
        assert parking.request_retry(conn, runner.name, BROKEN) == 1  # the one behind
    assert await runner.retry_parked() == 1

    assert {row[0]: row[2] for row in balances_of(engine)} == {"0": 8, "1": 6, "2": 1}
    dropped, applied = parked_of(engine, runner.name)
    assert (dropped.state, dropped.resolved_by, dropped.resolution) == (
        parking.DROPPED,
        "ops",
        "amount lost",
    )
    assert applied.state == parking.APPLIED
    engine.dispose()
    await store.close()


async def test_a_stream_whose_parked_events_are_all_dropped_flows_again_without_a_gap(
    tmp_path: Path,
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await open_accounts(store, accounts=2, movements=1)
    await deposit(store, BROKEN, "lots", 1)
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    feed = StoreFeed(store, complete_streams=True)  # where a skipped version is a gap
    runner = ProjectionRunner(BalancesProjection(), feed, engine, check=amounts_are_integers)
    await runner.catch_up()
    with engine.begin() as conn:
        assert parking.drop(conn, runner.name, BROKEN, "ops", "typed by hand") == 1

    assert await runner.retry_parked() == 0  # nothing applied: the dropped one passed over
    await deposit(store, BROKEN, 5, 2)
    await runner.catch_up()

    assert {row[0]: row[2] for row in balances_of(engine)}["1"] == 1 + 5
    [dropped] = parked_of(engine, runner.name)
    assert (dropped.state, dropped.resolution) == (parking.DROPPED, "typed by hand")
    engine.dispose()
    await store.close()


async def test_a_rebuild_that_meets_a_parked_event_again_parks_it_again_with_its_history(
    tmp_path: Path,
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await open_accounts(store, accounts=2, movements=3)
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    projection = BrokenOnOneStream()
    runner = ProjectionRunner(projection, StoreFeed(store), engine, retrying=QUICK)
    await runner.catch_up()
    with engine.begin() as conn:
        [failed, _] = parking.select(conn, consumer=runner.name)
        parking.drop(conn, runner.name, BROKEN, "ops", "a bad import", ids=[failed.id])
    await runner.retry_parked()  # the running consumer passes the dropped event over

    await runner.rebuild()  # the handler still fails on account-1

    assert kinds(parked_of(engine, runner.name, parking.OPEN)) == [
        (BROKEN, 2, "failed", 3),
        (BROKEN, 3, "behind", 0),
    ]
    assert parked_of(engine, runner.name)[0].resolution == "a bad import"  # kept
    assert {row[0]: row[2] for row in balances_of(engine)} == {"0": 6, "1": 1}
    engine.dispose()
    await store.close()


async def test_a_swapped_in_replay_keeps_what_it_parked_and_what_the_live_consumer_parked(
    tmp_path: Path,
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await open_accounts(store, accounts=2, movements=1)
    await deposit(store, BROKEN, "lots", 1)
    live = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    await ProjectionRunner(BalancesProjection(), StoreFeed(store), live).catch_up()  # no check
    shadow_url = f"sqlite:///{tmp_path}/shadow.db"
    shadow = create_read_model_engine(shadow_url)
    replay = ProjectionRunner(
        BalancesProjection(), StoreFeed(store), shadow, check=amounts_are_integers
    )
    with live.begin() as conn:  # something the live consumer parked before
        [opened] = await store.read_stream("account-0", limit=1)
        parking.park(conn, "account_balances", opened, parking.Parking("invalid", "earlier"))
    await replay.rebuild()

    swap(live, shadow_url, BalancesProjection(), lambda position: [])

    assert kinds(parked_of(live, "account_balances")) == [
        ("account-0", 0, "invalid", 0),
        (BROKEN, 2, "invalid", 0),
    ]
    live.dispose()
    shadow.dispose()
    await store.close()


class HeldOnRetry(BrokenOnOneStream):
    """Broken on ``account-1`` until fixed; fixed, its apply of ``account-1`` holds (a
    slow statement) until ``release`` is set, saying so in ``entered``."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def apply(self, event: RecordedEvent, conn: sa.Connection) -> None:
        if not self.broken and event.stream_id == BROKEN:
            self.entered.set()
            self.release.wait(30)
        super().apply(event, conn)


async def test_a_drop_while_a_projection_applies_the_retried_event_never_ends_half_done(
    tmp_path: Path, read_model_urls: Callable[[str], str]
) -> None:
    """Either the drop comes first and stands (the event not applied), or it finds the
    event applied and drops nothing: never a drop counted on a row marked applied."""
    store = SqliteEventStore(tmp_path / "events.db")
    engine = create_read_model_engine(read_model_urls("live"))
    projection = HeldOnRetry()
    runner = await broken_stream_parked(store, engine, projection)
    projection.broken = False
    with engine.begin() as conn:
        [row] = parking.select(conn, consumer=runner.name)
        parking.request_retry(conn, runner.name, BROKEN)
    retrying = asyncio.create_task(runner.retry_parked())
    await asyncio.to_thread(projection.entered.wait, 10)

    def drop() -> int:
        with engine.begin() as conn:
            return parking.drop(conn, runner.name, None, "ops", "by hand", ids=[row.id])

    dropping = asyncio.create_task(asyncio.to_thread(drop))
    await asyncio.wait([dropping], timeout=1)  # done, or waiting for the retry's commit
    projection.release.set()
    dropped = await dropping
    await retrying

    [after] = parked_of(engine, runner.name)
    balance = {r[0]: r[2] for r in balances_of(engine)}["1"]
    if dropped:
        assert (after.state, balance) == (parking.DROPPING, 1)
    else:
        assert (after.state, balance) == (parking.APPLIED, 1 + 2)
    engine.dispose()
    await store.close()


class Refused(Exception):
    """A domain refusal: the reaction's answer is no."""


class Recorder(ProcessManager):
    """Records the deposits it reacts to; a bug on ``account-1`` until fixed; refuses
    a deposit of 13 (a decision, not poison)."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.broken = True

    @reacts("MoneyDeposited")
    async def on_deposit(self, event: RecordedEvent) -> None:
        if event.data["amount_fen"] == 13:
            raise Refused("not 13")
        if self.broken and event.stream_id == BROKEN:
            raise RuntimeError("bug")
        self.seen.append((event.stream_id, event.stream_version))


class Hesitant(Recorder):
    """The recorder, fixed; its reaction to ``account-1`` waits for ``go`` (a slow peer),
    saying so in ``entered``."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.go = asyncio.Event(), asyncio.Event()

    @reacts("MoneyDeposited")
    async def on_deposit(self, event: RecordedEvent) -> None:
        if not self.broken and event.stream_id == BROKEN:
            self.entered.set()
            await self.go.wait()
        await super().on_deposit(event)


async def test_a_drop_during_a_running_retry_stays_a_drop(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await open_accounts(store, accounts=2, movements=2)
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/pm.db")
    manager = Hesitant()
    runner = ProcessManagerRunner(manager, StoreFeed(store), engine, retrying=QUICK)
    await runner.catch_up()  # account-1@1 failed, @2 behind it
    manager.broken = False
    with engine.begin() as conn:
        parking.request_retry(conn, "recorder", BROKEN)
    retrying = asyncio.create_task(runner.retry_parked())
    await asyncio.wait_for(manager.entered.wait(), 10)
    with engine.begin() as conn:  # the operator drops the first while it is retried
        [first, _] = parking.select(conn, consumer="recorder", states=parking.BLOCKING)
        assert parking.drop(conn, "recorder", None, "ops", "sent twice", ids=[first.id]) == 1
    manager.go.set()
    await asyncio.wait_for(retrying, 10)

    await runner.retry_parked()  # the next poll passes the dropped one over

    dropped, behind = parked_of(engine, "recorder")
    assert (dropped.stream_version, dropped.state) == (1, parking.DROPPED)
    assert (behind.stream_version, behind.state) == (2, parking.PARKED)
    engine.dispose()
    await store.close()


async def test_a_process_manager_parks_a_failing_stream_counts_refusals_and_retries_in_order(
    tmp_path: Path,
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await open_accounts(store, accounts=3, movements=2)
    await deposit(store, "account-2", 13, 2)
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/pm.db")
    manager = Recorder()
    runner = ProcessManagerRunner(
        manager, StoreFeed(store), engine, give_up_on=(Refused,), retrying=QUICK
    )
    refused = REGISTRY.get_sample_value(
        "civitas_consumer_failures_total", {"consumer": "recorder", "reason": "gave_up"}
    )

    await runner.catch_up()

    assert manager.seen == [("account-0", 1), ("account-0", 2), ("account-2", 1), ("account-2", 2)]
    assert kinds(parked_of(engine, "recorder")) == [
        (BROKEN, 1, "failed", 3),
        (BROKEN, 2, "behind", 0),
    ]
    assert (
        REGISTRY.get_sample_value(
            "civitas_consumer_failures_total", {"consumer": "recorder", "reason": "gave_up"}
        )
        == (refused or 0) + 1
    )
    manager.broken = False
    with engine.begin() as conn:
        parking.request_retry(conn, "recorder", None)
    assert await runner.retry_parked() == 2
    assert manager.seen[-2:] == [(BROKEN, 1), (BROKEN, 2)]
    engine.dispose()
    await store.close()


def consumer_behind_alert() -> tuple[str, float]:
    """The shipped alert on a consumer's seconds behind: its signal and threshold."""
    text = (RULES / "events.yml").read_text()
    found = re.search(r"- alert: CivitasConsumerBehind\n\s+expr: (.+)\n", text)
    assert found is not None, "events.yml has no CivitasConsumerBehind with a one-line expr"
    expr = found.group(1).strip()
    return signal_of(expr), float(expr.rpartition(">")[2])


async def test_a_stalled_consumer_shows_growing_lag_and_its_alert_condition_holds(
    tmp_path: Path,
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    ago = datetime.now(UTC) - timedelta(minutes=10)
    opened = NewEvent("AccountOpened", {"owner": "o", "community": "QH-01"}, occurred_at=ago)
    await store.append("account-0", [opened], StreamState.NO_STREAM)
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    projection = Stalled()
    runner = ProjectionRunner(projection, StoreFeed(store), engine)
    signal, threshold = consumer_behind_alert()
    assert signal == "max by (job, consumer) (civitas_consumer_behind_seconds)"
    try:
        async with running(runner):
            first = await runner.observe_lag()
            await asyncio.sleep(1.1)
            await deposit(store, "account-0", 5, 0)
            second = await runner.observe_lag()
            assert second[0] > first[0] >= 1  # messages behind
            assert second[1] > first[1] > threshold  # seconds behind: 10 minutes and growing
            scraped = REGISTRY.get_sample_value(
                "civitas_consumer_behind_seconds", {"consumer": runner.name}
            )
            assert scraped is not None
            assert scraped > threshold  # the alert's condition holds
            projection.release.set()
            head = await store.head_position()

            async def caught_up() -> bool:
                return await runner.position() == head

            await eventually(caught_up, "the released consumer to catch up", 30)
            assert await runner.observe_lag() == (0, 0.0)
    finally:
        projection.release.set()
    engine.dispose()
    await store.close()


async def test_the_dlq_command_lists_shows_retries_and_drops_with_a_reason(
    tmp_path: Path,
    read_model_urls: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = read_model_urls("cases")
    monkeypatch.setenv("CIVITAS_CASES_READ_MODEL_URL", url)
    store = SqliteEventStore(tmp_path / "events.db")
    await open_accounts(store, accounts=2, movements=1)
    [event] = await store.read_stream(BROKEN, from_version=1)
    engine = create_read_model_engine(url)
    with engine.begin() as conn:
        parking.parking.create_all(conn)
        why = parking.Parking("failed", "the handler failed 3 times", "KeyError: 'x'", 3)
        parking.park(conn, "cases_index", event, why)
    var = ["--var", str(tmp_path / "var")]

    assert main(["dlq", "list", *var]) == 0
    listed = capsys.readouterr().out
    assert all(word in listed for word in ("cases_index", BROKEN, "MoneyDeposited"))
    assert "failed: the handler failed 3 times / KeyError: 'x'" in listed
    assert main(["dlq", "show", "--consumer", "cases_index", "--stream", BROKEN, *var]) == 0
    assert '"amount_fen":1' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["dlq", "drop", "--consumer", "cases_index", *var])  # no reason
    assert main(["dlq", "drop", "--consumer", "cases_index", "--reason", "  ", *var]) == 2
    assert main(["dlq", "retry", "--consumer", "cases_index", *var]) == 0
    assert "1 parked event(s) marked for retry" in capsys.readouterr().out
    drop = ["dlq", "drop", "--stream", BROKEN, "--reason", "bad import", "--by", "li", "--yes"]
    assert main([*drop, *var]) == 0
    assert "1 parked event(s) dropped" in capsys.readouterr().out
    assert main(["dlq", "list", *var]) == 0
    assert "cases_index" not in capsys.readouterr().out
    assert main(["dlq", "list", "--all", *var]) == 0
    assert "dropping" in capsys.readouterr().out  # until the consumer passes it over
    [row] = parked_of(engine, "cases_index")
    assert (row.state, row.resolution) == (parking.DROPPING, "bad import")
    assert str(row.resolved_by).startswith("li (OS account ")  # the claim, and who ran it
    engine.dispose()
    await store.close()
