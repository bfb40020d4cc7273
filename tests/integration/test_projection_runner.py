"""The projection runner on every read-model database: tracking, crash, rebuild."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from civitas.eventkit import (
    EventFilter,
    NewEvent,
    ProjectionRunner,
    RecordedEvent,
    SqliteEventStore,
    StoreFeed,
    StreamState,
    create_read_model_engine,
)
from civitas.eventkit.projection import collecting_less, insert_many
from tests.conftest import POSTGRES_URL
from tests.support.accounts import BalancesProjection, read_balances

ROOT = Path(__file__).resolve().parents[2]
EngineFactory = Callable[[], sa.Engine]


async def ensure_schema(url: str) -> None:
    if "?schema=" in url:
        conn = await asyncpg.connect(POSTGRES_URL)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {url.rsplit('=', 1)[1]}")
        await conn.close()


async def engine_for(url: str) -> sa.Engine:
    await ensure_schema(url)
    return create_read_model_engine(url)


async def fill(store: SqliteEventStore, accounts: int, movements: int) -> int:
    for a in range(accounts):
        events = [NewEvent("AccountOpened", {"owner": f"o{a}", "community": f"QH-0{a % 9}"})]
        events += [
            NewEvent("MoneyDeposited" if m % 3 else "MoneyWithdrawn", {"amount_fen": m})
            for m in range(1, movements + 1)
        ]
        await store.append(f"account-{a}", events, StreamState.NO_STREAM)
    return await store.head_position()


async def snapshot_of(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return read_balances(conn)


async def test_the_runner_applies_events_and_saves_its_position_with_them(
    tmp_path: Path, read_model_urls: Callable[[str], str]
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    head = await fill(store, accounts=3, movements=4)
    engine = await engine_for(read_model_urls("live"))
    runner = ProjectionRunner(BalancesProjection(), StoreFeed(store, batch_size=4), engine)

    reached = await runner.catch_up()

    assert reached == head == await runner.position()
    balances = await snapshot_of(engine)
    assert [row[0] for row in balances] == ["0", "1", "2"]
    assert all(row[2] == 1 + 2 - 3 + 4 and row[3] == 4 for row in balances)
    engine.dispose()
    await store.close()


async def test_the_runner_follows_live_events_until_cancelled(
    tmp_path: Path, read_model_urls: Callable[[str], str]
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await fill(store, accounts=1, movements=1)
    engine = await engine_for(read_model_urls("live"))
    runner = ProjectionRunner(BalancesProjection(), StoreFeed(store), engine)
    await runner.setup()
    task = asyncio.create_task(runner.run())

    await store.append("account-0", [NewEvent("MoneyDeposited", {"amount_fen": 41})], 1)
    head = await store.head_position()
    for _ in range(100):
        if await runner.position() == head:
            break
        await asyncio.sleep(0.05)
    task.cancel()

    assert (await snapshot_of(engine))[0][2] == 42
    engine.dispose()
    await store.close()


@pytest.mark.slow
async def test_a_runner_killed_mid_way_resumes_to_the_same_read_model_as_a_rebuild(
    tmp_path: Path, read_model_urls: Callable[[str], str]
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    head = await fill(store, accounts=60, movements=100)
    live_url = read_model_urls("live")
    live = await engine_for(live_url)
    runner = ProjectionRunner(BalancesProjection(), StoreFeed(store, batch_size=50), live)
    await runner.setup()

    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.run_balances",
        str(tmp_path / "events.db"),
        live_url,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "CRASH_AT_EVENT": str(head // 3)},
    )
    ended = await asyncio.wait_for(child.wait(), 120)  # killed by itself, mid-transaction
    killed_at = await runner.position()
    resumed_to = await runner.catch_up()

    rebuilt = await engine_for(read_model_urls("rebuilt"))
    fresh = ProjectionRunner(BalancesProjection(), StoreFeed(store), rebuilt)
    await fresh.catch_up()
    await fresh.rebuild()  # a rebuild over a full read model ends the same

    assert ended == -signal.SIGKILL
    assert head // 3 - 10 <= killed_at < head // 3  # the last batch before the crash
    assert resumed_to == head
    assert await snapshot_of(live) == await snapshot_of(rebuilt)
    with live.connect() as conn:
        applied = conn.scalar(sa.text("SELECT count(*) FROM account_applied_events"))
    assert applied == 60 * 101
    live.dispose()
    rebuilt.dispose()
    await store.close()


class DeliversEverythingTwice(StoreFeed):
    """A feed at the transport edge that redelivers, as Kafka does after a relay restart."""

    async def read(
        self, *, after: int, filter: EventFilter | None, limit: int | None = None
    ) -> list[RecordedEvent]:
        batch = await super().read(after=after, filter=filter, limit=limit)
        return batch + list(reversed(batch[: len(batch) // 2]))


async def test_events_delivered_again_change_nothing_twice(
    tmp_path: Path, read_model_urls: Callable[[str], str]
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await fill(store, accounts=4, movements=30)
    twice = await engine_for(read_model_urls("twice"))
    once = await engine_for(read_model_urls("once"))

    await ProjectionRunner(
        BalancesProjection(), DeliversEverythingTwice(store, 7), twice
    ).catch_up()
    await ProjectionRunner(BalancesProjection(), StoreFeed(store), once).catch_up()

    assert await snapshot_of(twice) == await snapshot_of(once)
    twice.dispose()
    once.dispose()
    await store.close()


async def test_insert_many_stores_what_sqlalchemy_insert_stores(
    read_model_urls: Callable[[str], str],
) -> None:
    engine = await engine_for(read_model_urls("rows"))
    metadata = sa.MetaData()
    fast, usual = (
        sa.Table(
            name,
            metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("at", sa.DateTime(timezone=True)),
            sa.Column("note", sa.Text),
            sa.Column("done", sa.Boolean),
        )
        for name in ("many_fast", "many_usual")
    )
    at = datetime(2026, 11, 26, 9, 30, 0, 120, tzinfo=UTC)
    rows = [
        {"id": n, "at": at + timedelta(days=n), "note": f"第{n}行 'q' %s", "done": n % 2 == 0}
        for n in range(300)
    ] + [{"id": 300, "at": None, "note": None, "done": None}]
    with engine.begin() as conn:
        metadata.create_all(conn)
        insert_many(conn, fast, rows)
        insert_many(conn, fast, [])
        conn.execute(usual.insert(), rows)
    with engine.connect() as conn:
        stored = [
            conn.execute(sa.select(table).order_by(table.c.id)).all() for table in (fast, usual)
        ]
    engine.dispose()

    assert stored[0] == stored[1]
    assert [(r.id, r.note, r.done) for r in stored[0]] == [
        (r["id"], r["note"], r["done"]) for r in rows
    ]
    assert stored[0][7].at.replace(tzinfo=UTC) == at + timedelta(days=7)


async def test_a_rebuild_counts_its_events_but_records_no_delay_for_history(
    tmp_path: Path,
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await fill(store, accounts=3, movements=10)
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/read.db")
    runner = ProjectionRunner(BalancesProjection(), StoreFeed(store), engine)
    labels = {"projection": BalancesProjection.name}

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    counted = sample("civitas_projection_events_total")
    delays = sample("civitas_projection_delay_seconds_count")
    thresholds = gc.get_threshold()
    await runner.rebuild()
    rebuilt = (
        sample("civitas_projection_events_total"),
        sample("civitas_projection_delay_seconds_count"),
    )
    await store.append(
        "account-9", [NewEvent("AccountOpened", {"owner": "o9"})], StreamState.NO_STREAM
    )
    await runner.catch_up()

    assert rebuilt == (counted + 33, delays)
    assert sample("civitas_projection_delay_seconds_count") == delays + 1  # live: observed
    assert gc.get_threshold() == thresholds
    engine.dispose()
    await store.close()


def test_collecting_less_restores_the_collector_when_the_last_use_ends() -> None:
    normal = gc.get_threshold()
    with collecting_less():
        with collecting_less():
            inner = gc.get_threshold()
        between = gc.get_threshold()

    assert inner == between != normal
    assert gc.get_threshold() == normal
    gc.set_threshold(0)  # automatic collection off: it stays off
    try:
        with collecting_less():
            assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*normal)


async def test_two_runners_of_one_projection_never_apply_an_event_twice(
    tmp_path: Path, read_model_urls: Callable[[str], str]
) -> None:
    # Two processes running one projection (two replicas of a service, or a service
    # restarted while the old process still drains): each reads a stream's applied
    # version, then writes its next event.
    store = SqliteEventStore(tmp_path / "events.db")
    await fill(store, accounts=6, movements=40)
    both = await engine_for(read_model_urls("both"))
    alone = await engine_for(read_model_urls("alone"))
    await ProjectionRunner(BalancesProjection(), StoreFeed(store), alone).catch_up()

    runners = [ProjectionRunner(BalancesProjection(), StoreFeed(store, 2), both) for _ in "ab"]
    await runners[0].setup()
    await asyncio.gather(*(runner.catch_up() for runner in runners))

    assert await snapshot_of(both) == await snapshot_of(alone)
    both.dispose()
    alone.dispose()
    await store.close()


async def test_insert_many_takes_awkward_column_names_and_fills_defaults(
    read_model_urls: Callable[[str], str],
) -> None:
    engine = await engine_for(read_model_urls("awkward"))
    table = sa.Table(
        "awkward",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pct%", sa.Integer),
        sa.Column("kind", sa.String(10), default="plain"),
    )
    with engine.begin() as conn:
        table.metadata.create_all(conn)
        insert_many(conn, table, [{"id": 1, "pct%": 5}, {"id": 2, "pct%": 7}])
    with engine.connect() as conn:
        stored = conn.execute(sa.select(table).order_by(table.c.id)).all()
    engine.dispose()

    assert [tuple(r) for r in stored] == [(1, 5, "plain"), (2, 7, "plain")]
