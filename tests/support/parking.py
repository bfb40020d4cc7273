"""What the parking tests share on either feed: accounts whose events a consumer parks,
a projection that breaks on one stream until fixed, a check, and forged rows."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import sqlalchemy as sa

from civitas.chassis.service import in_background
from civitas.eventkit import (
    EventFilter,
    NewEvent,
    ProjectionRunner,
    RecordedEvent,
    StoreFeed,
    StreamState,
    create_read_model_engine,
)
from civitas.eventkit.parking import APPLIED, BLOCKING, DROPPED, ParkedEvent, select
from civitas.eventkit.projection import BatchHandler, Retrying, TrackedRunner
from civitas.eventkit.store import EventStore
from tests.support.accounts import BalancesProjection, read_balances

BROKEN = "account-1"
QUICK = Retrying(attempts=3, backoff=0.01)  # a failing handler, tried briefly
ALL_STATES = (*BLOCKING, APPLIED, DROPPED)


class BrokenOnOneStream(BalancesProjection):
    """The balances projection, whose handler fails on every movement of ``account-1``
    while ``broken`` (a bug there), and works for every other stream."""

    def __init__(self) -> None:
        self.broken = True

    def apply(self, event: RecordedEvent, conn: sa.Connection) -> None:
        if self.broken and event.stream_id == BROKEN and event.stream_version >= 2:
            raise ValueError(f"cannot apply {event.type} to {event.stream_id}")
        super().apply(event, conn)


def amounts_are_integers(event: RecordedEvent) -> str | None:
    """A check standing for a schema validator: a movement's amount is an integer."""
    amount = event.data.get("amount_fen", 0)
    if isinstance(amount, int) and not isinstance(amount, bool):
        return None
    return f"data.amount_fen: {amount!r} is not an integer"


async def open_accounts(store: EventStore, accounts: int, movements: int) -> None:
    """``accounts`` accounts with ``movements`` deposits each (versions 1..movements)."""
    for a in range(accounts):
        events = [NewEvent("AccountOpened", {"owner": f"o{a}", "community": "QH-01"})]
        events += [NewEvent("MoneyDeposited", {"amount_fen": m}) for m in range(1, movements + 1)]
        await store.append(f"account-{a}", events, StreamState.NO_STREAM)


async def deposit(store: EventStore, stream: str, amount: object, expected: int) -> None:
    await store.append(stream, [NewEvent("MoneyDeposited", {"amount_fen": amount})], expected)


async def broken_stream_parked(
    store: EventStore, engine: sa.Engine, projection: BrokenOnOneStream
) -> ProjectionRunner:
    """Two accounts of two deposits, caught up by a runner of ``projection``: its
    handler fails on ``account-1``'s second deposit (version 2), which is parked."""
    await open_accounts(store, accounts=2, movements=2)
    runner = ProjectionRunner(projection, StoreFeed(store), engine, retrying=QUICK)
    await runner.catch_up()
    return runner


def forge_far_ahead(path: Path, stream: str, version: int, amount: int) -> None:
    """Write a row into an SQLite store behind its back, as an insider with the file
    would: a copy of the stream's first deposit at a far-ahead version (the store's
    own head for the stream is left as it was, so genuine appends go on)."""
    conn = sqlite3.connect(path)
    try:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
        copied = [c for c in columns if c not in ("position", "event_id", "stream_version", "data")]
        with conn:
            conn.execute(
                f"INSERT INTO events (event_id, stream_version, data, {', '.join(copied)}) "
                f"SELECT ?, ?, ?, {', '.join(copied)} FROM events "
                "WHERE stream_id = ? AND type = 'MoneyDeposited' ORDER BY stream_version LIMIT 1",
                (str(uuid.uuid4()), version, f'{{"amount_fen": {amount}}}', stream),
            )
    finally:
        conn.close()


async def rebuilt(store: EventStore, tmp_path: Path) -> list[tuple[object, ...]]:
    """The balances a rebuild from the store makes: what a consumer must end with."""
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/rebuilt.db")
    await ProjectionRunner(BalancesProjection(), StoreFeed(store), engine).rebuild()
    try:
        return balances_of(engine)
    finally:
        engine.dispose()


def balances_of(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return read_balances(conn)


def parked_of(
    engine: sa.Engine, consumer: str, states: tuple[str, ...] = ALL_STATES
) -> list[ParkedEvent]:
    """Every parked row of ``consumer`` (whatever became of it), in stream order."""
    with engine.connect() as conn:
        return select(conn, consumer=consumer, states=states)


def kinds(rows: list[ParkedEvent]) -> list[tuple[str, int | None, str, int]]:
    """Each row's stream, version, kind of reason and attempts."""
    return [(r.stream_id, r.stream_version, r.reason.split(":")[0], r.attempts) for r in rows]


@contextlib.asynccontextmanager
async def running(runner: TrackedRunner) -> AsyncIterator[None]:
    """The runner following its feed in the background, as a service runs it."""
    await runner.setup()
    async with in_background(runner.name, runner.run):
        yield


class Stalled(BalancesProjection):
    """A projection whose handler hangs (a lock never released, a call without a
    deadline) until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def apply_all(self, events: list[RecordedEvent], conn: sa.Connection) -> None:
        self.release.wait(60)
        super().apply_all(events, conn)


class StampedFeed(StoreFeed):
    """The store feed, each event stamped with the store's identity as its origin, as
    an envelope from Kafka carries it: a feed on which a reset store shows."""

    async def run(self, handle: BatchHandler, *, after: int, filter: EventFilter | None) -> None:
        origin = await self.store.identity()

        async def stamped(batch: list[RecordedEvent]) -> None:
            await handle([dataclasses.replace(event, origin=origin) for event in batch])

        await super().run(stamped, after=after, filter=filter)

    async def read(
        self, *, after: int, filter: EventFilter | None, limit: int | None = None
    ) -> list[RecordedEvent]:
        origin = await self.store.identity()
        batch = await super().read(after=after, filter=filter, limit=limit)
        return [dataclasses.replace(event, origin=origin) for event in batch]
