"""PostgreSQL: readers wait only for this store's appends still in flight.

Unrelated transactions, in another database on the server or in the same one, hold
no reader back; an append held open mid-flight holds readers (and the sealer) below
its positions until it commits, and one that aborts leaves a gap they pass.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from asyncpg.transaction import Transaction

from civitas.eventkit import NewEvent, PostgresEventStore, RecordedEvent, StreamState
from tests.conftest import POSTGRES_URL, drop_schema, missing_dependency, postgres_reachable

pytestmark = pytest.mark.postgres

SEEN_WITHIN = 5.0  # seconds a subscriber may take to show a committed event


@pytest.fixture
async def store() -> AsyncIterator[PostgresEventStore]:
    if not await postgres_reachable():
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    opened = await PostgresEventStore.open(POSTGRES_URL, schema=schema)
    try:
        yield opened
    finally:
        await opened.close()
        await drop_schema(schema)


@pytest.fixture
async def other_session() -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        yield conn
    finally:
        await conn.close()


def other_database_url() -> str:
    """The same server's maintenance database (every server has ``postgres``)."""
    parts = urlsplit(POSTGRES_URL)
    return urlunsplit(parts._replace(path="/postgres"))


@pytest.fixture
async def reader(store: PostgresEventStore) -> AsyncIterator[PostgresEventStore]:
    """Another replica's store on the same schema: its own pool, and it polls."""
    opened = await PostgresEventStore.open(POSTGRES_URL, schema=store.schema)
    try:
        yield opened
    finally:
        await opened.close()


@asynccontextmanager
async def unrelated_transaction(url: str) -> AsyncIterator[None]:
    """A transaction with an id, open meanwhile (a long report, an idle session)."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.fetchval("SELECT pg_current_xact_id()")
            yield
    finally:
        await conn.close()


async def begin_append(
    conn: asyncpg.Connection, store: PostgresEventStore, stream_id: str, type_: str
) -> Transaction:
    """An append through the store's own function, its transaction left open: in flight.
    (Without the sealer, whose turn it would hold until it ends.)"""
    prepared = store._prepare_one(stream_id, NewEvent(type_, {"n": 1}))
    event = prepared.event
    tx = conn.transaction()
    await tx.start()
    await conn.fetchrow(
        f"SELECT * FROM {store.schema}.append_events($1, $2, -2, $3, $4, $5, $6, $7, $8, "
        "$9, $10, $11)",
        stream_id,
        stream_id.split("-", 1)[0],
        [event.event_id],
        [event.type],
        [event.schema_version],
        [prepared.occurred_at],
        [event.actor],
        [event.correlation_id],
        [event.causation_id],
        [prepared.data_json],
        [prepared.digest],
    )
    return tx


async def first_batch(reader: PostgresEventStore, after: int = 0) -> list[RecordedEvent]:
    """What a subscriber on another pool gets first (it polls: no wake-up from here)."""
    batches = reader.subscribe(after=after)
    try:
        return await asyncio.wait_for(anext(batches), SEEN_WITHIN)
    finally:
        await batches.aclose()


async def appended(store: PostgresEventStore, *types: str) -> list[int]:
    positions = []
    for type_ in types:
        result = await store.append(f"case-{type_.lower()}", [NewEvent(type_, {})], StreamState.ANY)
        assert result.position is not None
        positions.append(result.position)
    return positions


async def assert_intact_and_sealed(store: PostgresEventStore, *, events: int) -> None:
    report = await store.verify()
    assert report.intact, report.broken
    assert (report.events, report.sealed) == (events, events)


@pytest.mark.parametrize("where", ["another database", "the same database"])
async def test_an_unrelated_open_transaction_holds_no_reader_back(
    store: PostgresEventStore, reader: PostgresEventStore, where: str
) -> None:
    url = other_database_url() if where == "another database" else POSTGRES_URL
    async with unrelated_transaction(url):
        positions = await appended(store, "First", "Second")

        shown = await store.read_all()
        subscribed = await first_batch(reader)
        head = await reader.head_position()
        sealed = await store.seal()

        assert [e.position for e in shown] == positions
        assert [e.position for e in subscribed] == positions
        assert head == positions[-1]
        assert sealed == 1, "the last append's own row waits for the next seal, no longer"
        await assert_intact_and_sealed(store, events=len(positions))


async def test_a_held_append_holds_readers_and_the_sealer_below_it_until_it_commits(
    store: PostgresEventStore, reader: PostgresEventStore, other_session: asyncpg.Connection
) -> None:
    async with unrelated_transaction(other_database_url()):  # the horizon is no xmin
        (before,) = await appended(store, "Before")
        held = await begin_append(other_session, store, "case-held", "Held")
        (after,) = await appended(store, "After")

        while_held = await store.read_all()
        head_while_held = await reader.head_position()
        sealed_while_held = await store.seal()  # "After" sealed "Before", and no further
        subscribed_while_held = await first_batch(reader)
        await held.commit()
        after_commit = await store.read_all()
        subscribed = await first_batch(reader, after=before)
        sealed_after_commit = await store.seal()

        assert [e.position for e in while_held] == [before]
        assert head_while_held == before
        assert (sealed_while_held, sealed_after_commit) == (0, 2)
        assert [e.position for e in subscribed_while_held] == [before]
        assert [e.type for e in after_commit] == ["Before", "Held", "After"]
        assert after_commit[1].position < after == after_commit[2].position
        assert [e.type for e in subscribed] == ["Held", "After"]
        await assert_intact_and_sealed(store, events=3)


async def test_an_aborted_append_leaves_a_gap_that_readers_and_the_sealer_pass(
    store: PostgresEventStore, other_session: asyncpg.Connection
) -> None:
    held = await begin_append(other_session, store, "case-aborted", "Aborted")
    (after,) = await appended(store, "After")
    assert await store.read_all() == []
    assert await store.seal() == 0

    await held.rollback()
    shown = await store.read_all()

    assert [(e.type, e.position) for e in shown] == [("After", after)]
    assert after == 2, "the aborted append took position 1"
    assert await store.head_position() == after
    assert await store.seal() == 1
    await assert_intact_and_sealed(store, events=1)


@pytest.mark.parametrize("start", [2**31 - 2, 2**32 - 2], ids=["int4 sign", "32-bit wrap"])
async def test_markers_hold_readers_where_positions_cross_32_bit_boundaries(
    store: PostgresEventStore, other_session: asyncpg.Connection, start: int
) -> None:
    """Markers carry a position's low 32 bits: a held append just below a boundary
    still holds readers back once later positions pass it."""
    await other_session.execute(f"SELECT setval('{store.schema}.event_position', {start})")
    (first,) = await appended(store, "First")
    held = await begin_append(other_session, store, "case-held", "Held")
    later = await appended(store, "Later", "Latest")

    while_held = await store.read_all()
    await held.commit()
    after_commit = await store.read_all()

    assert [e.position for e in while_held] == [first] == [start + 1]
    assert [e.type for e in after_commit] == ["First", "Held", "Later", "Latest"]
    assert [e.position for e in after_commit] == [start + 1, start + 2, *later]


async def test_a_reader_following_racing_appends_that_commit_late_or_abort_skips_none(
    store: PostgresEventStore,
) -> None:
    """Writers hold their appends open for random times and abort some; a reader that
    resumes after the last position it saw ends with every committed event, once."""
    rng = random.Random(19)
    committed: list[uuid.UUID] = []

    async def writer(n: int) -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            for i in range(8):
                tx = await begin_append(conn, store, f"case-w{n}i{i}", "Raced")
                await asyncio.sleep(rng.uniform(0, 0.03))
                if rng.random() < 0.2:
                    await tx.rollback()
                    continue
                await tx.commit()
                (event,) = await store.read_stream(f"case-w{n}i{i}")
                committed.append(event.event_id)
        finally:
            await conn.close()

    seen: list[RecordedEvent] = []

    async def follow(done: asyncio.Event) -> None:
        while True:
            finished = done.is_set()
            seen.extend(await store.read_all(after=seen[-1].position if seen else 0))
            if finished:
                return
            await asyncio.sleep(0.002)

    done = asyncio.Event()
    reading = asyncio.create_task(follow(done))
    await asyncio.gather(*(writer(n) for n in range(6)))
    done.set()
    await reading

    assert sorted(e.event_id for e in seen) == sorted(committed)
    assert len(committed) > 20
    assert [e.position for e in seen] == sorted({e.position for e in seen})


async def test_the_horizon_refuses_a_snapshot_older_than_its_statements(
    store: PostgresEventStore, other_session: asyncpg.Connection
) -> None:
    """Under REPEATABLE READ the rows would be read with the transaction's first
    snapshot, older than the horizon: a late commit could be passed. Refused."""
    async with other_session.transaction(isolation="repeatable_read"):
        with pytest.raises(asyncpg.PostgresError, match="READ COMMITTED"):
            await other_session.fetchval(f"SELECT {store.schema}.horizon()")
