"""Event store throughput on SQLite and PostgreSQL, beside its honest alternatives.

Run with ``make bench-eventstore`` (starts PostgreSQL) or ``python -m benchmarks.eventstore``.
Writes ``benchmarks/results/eventstore.json`` and prints a table.

For each backend, in one run and interleaved (A, B, C, A, B, C …), median of
``BENCH_REPEATS`` (default 5) runs of ``BENCH_SECONDS`` (default 1.5) each:

1. one writer appending single events to one stream, expected version exact,
   against the raw driver (one INSERT + COMMIT per event into the same events
   table) and the ``eventsourcing`` library's recorder (one StoredEvent per call);
2. 50 concurrent writers (asyncio tasks, one stream each) against case 1's one
   writer (the group-commit check), and the library with 50 threads;
3. batches of 100 events per append against the raw driver's executemany of 100
   rows in one transaction, and the library inserting 100 StoredEvents per call;
4. ``read_all`` pages of 1000 over 100,000 events prepared beforehand, against the
   raw driver selecting the same rows (fetch + json.loads of the data) and the
   library's ``select_notifications`` (fetch + json.loads of the state).

The global chain's cost (cases 1, 2 and 4): this store against itself opened with
``global_chain=False`` (the append path from before the ledger), in the same run.

Every case uses a fresh SQLite file in a fresh temp dir, or a fresh PostgreSQL
schema, dropped at the end. Durability everywhere: SQLite WAL with
``synchronous=FULL``; PostgreSQL with the server's ``fsync=on`` and
``synchronous_commit=on`` (checked, and recorded in the machine block).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
from eventsourcing.persistence import ApplicationRecorder, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from civitas.eventkit import (
    EventStore,
    NewEvent,
    PostgresEventStore,
    SqliteEventStore,
    StreamState,
)

from ._common import (
    Result,
    Target,
    Variant,
    code_state,
    concurrent_rate,
    env_float,
    env_int,
    format_table,
    interleaved,
    log,
    machine_info,
    rate_for,
    rate_for_sync,
    threaded_rate,
    write_results,
)

DSN = os.environ.get(
    "CIVITAS_BENCH_POSTGRES_URL", "postgresql://civitas:civitas@127.0.0.1:5432/civitas_bench"
)
SECONDS = env_float("BENCH_SECONDS", 1.5)
REPEATS = env_int("BENCH_REPEATS", 5)
READ_EVENTS = env_int("BENCH_READ_EVENTS", 100_000)
WRITERS = 50
BATCH = 100
PAGE = 1000
PREP_BATCH = 1000
#: Connections for the concurrent PostgreSQL writers: our store's default pool
#: size, given alike to the raw asyncpg pool and the eventsourcing pool.
PG_POOL = 20

UNIT = "events/s (higher is better)"
EVENT_TYPE = "CaseOpened"
ES_TOPIC = "benchmarks.eventstore:CaseOpened"
PLACEHOLDER_HASH = bytes(32)
ES_VERSION = version("eventsourcing")

_SQLITE_RAW_DDL = """
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    event_id       TEXT    NOT NULL UNIQUE,
    stream_id      TEXT    NOT NULL,
    category       TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    type           TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    occurred_at    TEXT    NOT NULL,
    actor          TEXT,
    correlation_id TEXT,
    causation_id   TEXT,
    data           TEXT    NOT NULL,
    hash           BLOB    NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_by_category ON events (category, position);
CREATE INDEX events_by_type ON events (type, position);
"""
_SQLITE_INSERT = (
    "INSERT INTO events (event_id, stream_id, category, stream_version, type, schema_version, "
    "occurred_at, actor, correlation_id, causation_id, data, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PG_RAW_DDL = """
CREATE TABLE {s}.events (
    position       bigserial   PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    stream_id      text        NOT NULL,
    category       text        NOT NULL,
    stream_version bigint      NOT NULL,
    type           text        NOT NULL,
    schema_version integer     NOT NULL,
    occurred_at    timestamptz NOT NULL,
    actor          text,
    correlation_id text,
    causation_id   text,
    data           text        NOT NULL,
    hash           bytea       NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX ON {s}.events (category, position);
CREATE INDEX ON {s}.events (type, position);
"""
_PG_INSERT = (
    "INSERT INTO {s}.events (event_id, stream_id, category, stream_version, type, "
    "schema_version, occurred_at, actor, correlation_id, causation_id, data, hash) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
)
_COLUMNS = (
    "event_id, stream_id, stream_version, position, type, schema_version, occurred_at, "
    "actor, correlation_id, causation_id, data, hash"
)
_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def event_data(n: int) -> dict[str, Any]:
    """A typical small event body (about 150 bytes of JSON)."""
    return {
        "case_id": f"case-{n}",
        "title": "Street light out on Elm Street",
        "priority": 3,
        "reported_by": "resident",
        "tags": ["lighting", "street"],
        "seq": n,
    }


def new_stream() -> str:
    return f"bench-{uuid.uuid4().hex}"


def sync_variant(run: Callable[[float], float]) -> Variant:
    """Wrap a blocking measurement as a variant (it runs on the event loop's thread)."""

    async def variant(seconds: float) -> float:
        return run(seconds)

    return variant


# -- writers: one stream each, expected version exact ---------------------------


class StoreWriter:
    """Appends ``batch`` events per call to one stream of our store."""

    def __init__(self, store: EventStore, batch: int = 1) -> None:
        self.store = store
        self.batch = batch
        self.stream = new_stream()
        self.expected: StreamState | int = StreamState.NO_STREAM
        self.n = 0

    async def step(self) -> int:
        events = [NewEvent(type=EVENT_TYPE, data=event_data(self.n + i)) for i in range(self.batch)]
        result = await self.store.append(self.stream, events, self.expected)
        self.expected = result.stream_version
        self.n += self.batch
        return self.batch


class RawSqliteWriter:
    """sqlite3: BEGIN, one INSERT (or executemany of ``batch`` rows), COMMIT."""

    def __init__(self, conn: sqlite3.Connection, batch: int = 1) -> None:
        self.conn = conn
        self.batch = batch
        self.stream = new_stream()
        self.version = -1

    def rows(self) -> list[tuple[Any, ...]]:
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        rows = []
        for _ in range(self.batch):
            self.version += 1
            rows.append(
                (
                    str(uuid.uuid4()),
                    self.stream,
                    "bench",
                    self.version,
                    EVENT_TYPE,
                    1,
                    now,
                    None,
                    None,
                    None,
                    json.dumps(event_data(self.version)),
                    PLACEHOLDER_HASH,
                )
            )
        return rows

    def step(self) -> int:
        rows = self.rows()
        self.conn.execute("BEGIN")
        if self.batch == 1:
            self.conn.execute(_SQLITE_INSERT, rows[0])
        else:
            self.conn.executemany(_SQLITE_INSERT, rows)
        self.conn.execute("COMMIT")
        return self.batch


class RawPgWriter:
    """asyncpg: one INSERT per event in autocommit, or executemany in one transaction.

    Given a connection, it keeps it (the driver's limit for one writer); given a
    pool, it acquires a connection per call, as concurrent writers must.
    """

    def __init__(self, db: asyncpg.Connection | asyncpg.Pool, schema: str, batch: int = 1) -> None:
        self.db = db
        self.sql = _PG_INSERT.format(s=schema)
        self.batch = batch
        self.stream = new_stream()
        self.version = -1

    def rows(self) -> list[tuple[Any, ...]]:
        now = datetime.now(UTC)
        rows = []
        for _ in range(self.batch):
            self.version += 1
            rows.append(
                (
                    uuid.uuid4(),
                    self.stream,
                    "bench",
                    self.version,
                    EVENT_TYPE,
                    1,
                    now,
                    None,
                    None,
                    None,
                    json.dumps(event_data(self.version)),
                    PLACEHOLDER_HASH,
                )
            )
        return rows

    async def step(self) -> int:
        rows = self.rows()
        if isinstance(self.db, asyncpg.Pool):
            async with self.db.acquire() as conn:
                await self._write(conn, rows)
        else:
            await self._write(self.db, rows)
        return self.batch

    async def _write(self, conn: Any, rows: list[tuple[Any, ...]]) -> None:
        if self.batch == 1:
            await conn.execute(self.sql, *rows[0])
        else:
            async with conn.transaction():
                await conn.executemany(self.sql, rows)


class EsWriter:
    """eventsourcing: ``recorder.insert_events`` of ``batch`` StoredEvents of one aggregate."""

    def __init__(self, recorder: ApplicationRecorder, batch: int = 1) -> None:
        self.recorder = recorder
        self.batch = batch
        self.originator_id = uuid.uuid4()
        self.version = 0

    def step(self) -> int:
        events = []
        for _ in range(self.batch):
            self.version += 1
            events.append(
                StoredEvent(
                    originator_id=self.originator_id,
                    originator_version=self.version,
                    topic=ES_TOPIC,
                    state=json.dumps(event_data(self.version)).encode(),
                )
            )
        self.recorder.insert_events(events)
        return self.batch


# -- readers: pages of PAGE, passing over the whole log until the deadline -------


async def read_store(store: EventStore, seconds: float) -> float:
    count, after = 0, 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        page = await store.read_all(after=after, limit=PAGE)
        if not page:
            after = 0
            continue
        after = page[-1].position
        count += len(page)
    return count / (time.perf_counter() - start)


def read_raw_sqlite(conn: sqlite3.Connection, seconds: float) -> float:
    sql = f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
    count, after = 0, 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        rows = conn.execute(sql, (after, PAGE)).fetchall()
        if not rows:
            after = 0
            continue
        for row in rows:
            json.loads(row[10])
        after = rows[-1][3]
        count += len(rows)
    return count / (time.perf_counter() - start)


async def read_raw_pg(pool: asyncpg.Pool, schema: str, seconds: float) -> float:
    sql = f"SELECT {_COLUMNS} FROM {schema}.events WHERE position > $1 ORDER BY position LIMIT $2"
    count, after = 0, 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        rows = await pool.fetch(sql, after, PAGE)
        if not rows:
            after = 0
            continue
        for row in rows:
            json.loads(row[10])
        after = rows[-1][3]
        count += len(rows)
    return count / (time.perf_counter() - start)


def read_es(recorder: ApplicationRecorder, seconds: float) -> float:
    count, after = 0, 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        notifications = recorder.select_notifications(start=after + 1, limit=PAGE)
        if not notifications:
            after = 0
            continue
        for notification in notifications:
            json.loads(notification.state)
        after = notifications[-1].id
        count += len(notifications)
    return count / (time.perf_counter() - start)


async def fill_store(store: EventStore, total: int) -> None:
    for first in range(0, total, PREP_BATCH):
        events = [NewEvent(type=EVENT_TYPE, data=event_data(first + i)) for i in range(PREP_BATCH)]
        await store.append(new_stream(), events, StreamState.NO_STREAM)


def fill_es(recorder: ApplicationRecorder, total: int) -> None:
    for _ in range(0, total, PREP_BATCH):
        EsWriter(recorder, batch=PREP_BATCH).step()


# -- the cases, shared by both backends ----------------------------------------


def writer_results(
    backend: str,
    samples: dict[str, list[float]],
    texts: dict[str, str],
    targets: dict[str, Target],
    extra: dict[str, Any] | None = None,
) -> list[Result]:
    """Results of the one-writer and 50-writer group (cases 1 and 2)."""
    results = [
        Result(
            f"{backend}.one_writer.single_events",
            samples["ours"],
            UNIT,
            texts["raw"],
            samples["raw"],
            targets.get("one_writer"),
            extra=extra or {},
        ),
        Result(
            f"{backend}.one_writer.single_events.vs_eventsourcing",
            samples["ours"],
            UNIT,
            texts["eventsourcing"],
            samples["eventsourcing"],
            targets.get("one_writer.vs_eventsourcing"),
        ),
        Result(
            f"{backend}.concurrent_50_writers.single_events",
            samples["ours_50"],
            UNIT,
            f"this store, one writer ({backend}.one_writer.single_events, same run, interleaved)",
            samples["ours"],
            targets.get("concurrent"),
            note="ratio = 50 concurrent writers / one writer (group commit)",
        ),
    ]
    if "raw_50" in samples:
        results.append(
            Result(
                f"{backend}.concurrent_50_writers.single_events.vs_raw",
                samples["ours_50"],
                UNIT,
                texts["raw_50"],
                samples["raw_50"],
            )
        )
    results += [
        Result(
            f"{backend}.concurrent_50_writers.single_events.vs_eventsourcing_50_threads",
            samples["ours_50"],
            UNIT,
            texts["eventsourcing_50"],
            samples["eventsourcing_50"],
        ),
        Result(
            f"{backend}.eventsourcing_50_threads.single_events",
            samples["eventsourcing_50"],
            UNIT,
            "the eventsourcing library with one thread (same run, interleaved)",
            samples["eventsourcing"],
            note="the peer library's own concurrency scaling, for comparison",
        ),
    ]
    return results


def chain_cost(backend: str, samples: dict[str, list[float]]) -> list[Result]:
    """What the global chain (the ledger) costs appends: this store against itself with
    the chain turned off (today's append path before the ledger), same run, interleaved."""
    text = "this store with global_chain=False (no ledger: the append path before it), "
    return [
        Result(
            f"{backend}.global_chain_cost.one_writer.single_events",
            samples["ours"],
            UNIT,
            text + "one writer, same run, interleaved",
            samples["unchained"],
            Target("ratio", ">=", 0.9),
            note="ratio = with the global chain / without",
        ),
        Result(
            f"{backend}.global_chain_cost.concurrent_50_writers.single_events",
            samples["ours_50"],
            UNIT,
            text + "50 concurrent writers, same run, interleaved",
            samples["unchained_50"],
            note="ratio = with the global chain / without",
        ),
    ]


def read_cost(backend: str, samples: dict[str, list[float]]) -> Result:
    return Result(
        f"{backend}.global_chain_cost.read_all",
        samples["ours"],
        UNIT,
        "the same events read through a store opened with global_chain=False, interleaved "
        "(read_all never reads the ledger)",
        samples["unchained"],
        Target("ratio", ">=", 0.9),
        note="ratio = with the global chain / without",
    )


def pair(
    case: str,
    samples: dict[str, list[float]],
    texts: dict[str, str],
    target: Target | None = None,
    es_target: Target | None = None,
    extra: dict[str, Any] | None = None,
) -> list[Result]:
    """``case`` against the raw driver, and ``case.vs_eventsourcing``."""
    return [
        Result(
            case, samples["ours"], UNIT, texts["raw"], samples["raw"], target, extra=extra or {}
        ),
        Result(
            f"{case}.vs_eventsourcing",
            samples["ours"],
            UNIT,
            texts["eventsourcing"],
            samples["eventsourcing"],
            es_target,
        ),
    ]


# -- SQLite -------------------------------------------------------------------


def raw_sqlite(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(_SQLITE_RAW_DDL)
    return conn


def es_sqlite(path: Path) -> tuple[SQLiteDatastore, SQLiteApplicationRecorder, str]:
    """The library's SQLite recorder with its defaults; returns its synchronous setting."""
    datastore = SQLiteDatastore(str(path))
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA journal_mode")
        journal = str(cursor.fetchone()[0]).upper()
        cursor.execute("PRAGMA synchronous")
        synchronous = _SYNCHRONOUS.get(cursor.fetchone()[0], "?")
    return datastore, recorder, f"journal_mode={journal}, synchronous={synchronous}"


async def sqlite_cases(tmp: Path) -> list[Result]:
    results: list[Result] = []
    raw_text = "raw sqlite3, WAL, synchronous=FULL, same events table and indexes"
    es_text = f"eventsourcing {ES_VERSION} SQLiteApplicationRecorder.insert_events"

    log("sqlite: one writer and 50 concurrent writers")
    store = SqliteEventStore(tmp / "ours-single.db")
    plain = SqliteEventStore(tmp / "ours-plain.db", global_chain=False)
    conn = raw_sqlite(tmp / "raw-single.db")
    datastore, recorder, es_durability = es_sqlite(tmp / "es-single.db")
    try:
        samples = await interleaved(
            {
                "ours": lambda s: rate_for(s, StoreWriter(store).step),
                "unchained": lambda s: rate_for(s, StoreWriter(plain).step),
                "unchained_50": lambda s: concurrent_rate(
                    s, [StoreWriter(plain).step for _ in range(WRITERS)]
                ),
                "raw": sync_variant(lambda s: rate_for_sync(s, RawSqliteWriter(conn).step)),
                "eventsourcing": sync_variant(lambda s: rate_for_sync(s, EsWriter(recorder).step)),
                "ours_50": lambda s: concurrent_rate(
                    s, [StoreWriter(store).step for _ in range(WRITERS)]
                ),
                "eventsourcing_50": sync_variant(
                    lambda s: threaded_rate(s, [EsWriter(recorder).step for _ in range(WRITERS)])
                ),
            },
            repeats=REPEATS,
            seconds=SECONDS,
            label="sqlite.",
        )
    finally:
        await store.close()
        await plain.close()
        conn.close()
        datastore.close()
    results += writer_results(
        "sqlite",
        samples,
        {
            "raw": f"{raw_text}: BEGIN, one INSERT, COMMIT per event",
            "eventsourcing": f"{es_text}, one StoredEvent per call ({es_durability}, "
            "the library's defaults)",
            "eventsourcing_50": f"{es_text}, 50 threads, one aggregate each, one StoredEvent "
            f"per call ({es_durability}, default pool)",
        },
        {
            "one_writer": Target("ratio", ">=", 0.7),
            "concurrent": Target("ratio", ">=", 5),
        },
    )
    results += chain_cost("sqlite", samples)

    log("sqlite: batches of 100")
    store = SqliteEventStore(tmp / "ours-batch.db")
    conn = raw_sqlite(tmp / "raw-batch.db")
    datastore, recorder, es_durability = es_sqlite(tmp / "es-batch.db")
    try:
        samples = await interleaved(
            {
                "ours": lambda s: rate_for(s, StoreWriter(store, BATCH).step),
                "raw": sync_variant(lambda s: rate_for_sync(s, RawSqliteWriter(conn, BATCH).step)),
                "eventsourcing": sync_variant(
                    lambda s: rate_for_sync(s, EsWriter(recorder, BATCH).step)
                ),
            },
            repeats=REPEATS,
            seconds=SECONDS,
            label="sqlite.batches.",
        )
    finally:
        await store.close()
        conn.close()
        datastore.close()
    results += pair(
        "sqlite.batches_of_100",
        samples,
        {
            "raw": f"{raw_text}: BEGIN, executemany of 100 rows, COMMIT",
            "eventsourcing": f"{es_text}, 100 StoredEvents per call ({es_durability})",
        },
    )

    log(f"sqlite: read_all over {READ_EVENTS:,} events")
    store = SqliteEventStore(tmp / "ours-read.db")
    plain = SqliteEventStore(tmp / "ours-read.db", global_chain=False)
    datastore, recorder, _ = es_sqlite(tmp / "es-read.db")
    conn = sqlite3.connect(tmp / "ours-read.db", isolation_level=None)
    try:
        started = time.perf_counter()
        await fill_store(store, READ_EVENTS)
        fill_es(recorder, READ_EVENTS)
        log(f"  prepared in {time.perf_counter() - started:.1f}s")
        samples = await interleaved(
            {
                "ours": lambda s: read_store(store, s),
                "unchained": lambda s: read_store(plain, s),
                "raw": sync_variant(lambda s: read_raw_sqlite(conn, s)),
                "eventsourcing": sync_variant(lambda s: read_es(recorder, s)),
            },
            repeats=REPEATS,
            seconds=SECONDS,
            label="sqlite.read_all.",
        )
    finally:
        await store.close()
        await plain.close()
        conn.close()
        datastore.close()
    results += pair(
        "sqlite.read_all",
        samples,
        {
            "raw": f"raw sqlite3 SELECT of the same columns from the same file, pages of {PAGE} "
            "by position, fetchall + json.loads of data",
            "eventsourcing": f"eventsourcing {ES_VERSION} select_notifications, pages of {PAGE}, "
            f"+ json.loads of state ({READ_EVENTS:,} events in its own table)",
        },
        target=Target("value", ">=", 100_000),
    )
    results.append(read_cost("sqlite", samples))
    return results


# -- PostgreSQL ---------------------------------------------------------------


class Schemas:
    """Fresh schemas for one run, all dropped at the end."""

    def __init__(self, admin: asyncpg.Connection) -> None:
        self.admin = admin
        self.run = uuid.uuid4().hex[:8]
        self.made: list[str] = []

    def name(self, what: str) -> str:
        schema = f"bench_{self.run}_{what}"
        self.made.append(schema)
        return schema

    async def create(self, what: str) -> str:
        schema = self.name(what)
        await self.admin.execute(f"CREATE SCHEMA {schema}")
        return schema

    async def drop_all(self) -> None:
        for schema in self.made:
            await self.admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    async def raw_table(self, what: str) -> str:
        """A fresh schema holding the raw baselines' events table."""
        schema = await self.create(what)
        await self.admin.execute(_PG_RAW_DDL.format(s=schema))
        return schema

    async def scans(self, schema: str) -> dict[str, int]:
        """Sequential and index scans of ``schema.events`` so far (a diagnostic)."""
        await asyncio.sleep(1)  # closed sessions flush their statistics on exit
        row = await self.admin.fetchrow(
            "SELECT seq_scan, idx_scan, n_live_tup FROM pg_stat_user_tables "
            "WHERE schemaname = $1 AND relname = 'events'",
            schema,
        )
        return dict(row) if row else {}


async def es_pg(
    schemas: Schemas, what: str, pool_size: int = 1
) -> tuple[PostgresDatastore, PostgresApplicationRecorder, str]:
    """The library's PostgreSQL recorder; returns the session's synchronous_commit."""
    schema = await schemas.create(what)
    url = urlsplit(DSN)
    datastore = PostgresDatastore(
        dbname=url.path.lstrip("/"),
        host=url.hostname or "127.0.0.1",
        port=url.port or 5432,
        user=unquote(url.username or ""),
        password=unquote(url.password or ""),
        schema=schema,
        pool_size=pool_size,
    )
    recorder = PostgresApplicationRecorder(datastore)
    recorder.create_table()
    with datastore.get_connection() as conn:
        row = conn.execute("SHOW synchronous_commit").fetchone()
    assert row is not None
    return datastore, recorder, f"synchronous_commit={row['synchronous_commit']}"


async def postgres_cases(schemas: Schemas) -> list[Result]:
    results: list[Result] = []
    raw_text = "raw asyncpg, same events table and indexes (position bigserial)"
    es_text = f"eventsourcing {ES_VERSION} PostgresApplicationRecorder.insert_events"

    log("postgres: one writer and 50 concurrent writers")
    ours_schema = schemas.name("ours_single")
    store = await PostgresEventStore.open(DSN, schema=ours_schema)
    plain = await PostgresEventStore.open(
        DSN, schema=schemas.name("ours_plain"), global_chain=False
    )
    raw_schema = await schemas.raw_table("raw_single")
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=PG_POOL)
    conn = await asyncpg.connect(DSN)
    datastore, recorder, es_durability = await es_pg(schemas, "es_single", pool_size=PG_POOL)
    try:
        samples = await interleaved(
            {
                "ours": lambda s: rate_for(s, StoreWriter(store).step),
                "unchained": lambda s: rate_for(s, StoreWriter(plain).step),
                "unchained_50": lambda s: concurrent_rate(
                    s, [StoreWriter(plain).step for _ in range(WRITERS)]
                ),
                "raw": lambda s: rate_for(s, RawPgWriter(conn, raw_schema).step),
                "eventsourcing": sync_variant(lambda s: rate_for_sync(s, EsWriter(recorder).step)),
                "ours_50": lambda s: concurrent_rate(
                    s, [StoreWriter(store).step for _ in range(WRITERS)]
                ),
                "raw_50": lambda s: concurrent_rate(
                    s, [RawPgWriter(pool, raw_schema).step for _ in range(WRITERS)]
                ),
                "eventsourcing_50": sync_variant(
                    lambda s: threaded_rate(s, [EsWriter(recorder).step for _ in range(WRITERS)])
                ),
            },
            repeats=REPEATS,
            seconds=SECONDS,
            label="postgres.",
        )
    finally:
        await store.close()
        await plain.close()
        await conn.close()
        await pool.close()
        datastore.close()
    scans = await schemas.scans(ours_schema)
    results += writer_results(
        "postgres",
        samples,
        {
            "raw": f"{raw_text}: one INSERT per event, autocommit, one held connection "
            f"({es_durability})",
            "raw_50": f"{raw_text}: 50 asyncio tasks, one INSERT per event, autocommit, "
            f"pool of {PG_POOL} connections (as this store's default)",
            "eventsourcing": f"{es_text}, one StoredEvent per call ({es_durability}, "
            "the library's defaults: LOCK TABLE + NOTIFY + INSERT in a pipeline)",
            "eventsourcing_50": f"{es_text}, 50 threads, one aggregate each, pool of {PG_POOL} "
            f"connections ({es_durability})",
        },
        {"one_writer.vs_eventsourcing": Target("ratio", ">=", 3)},
        extra={"diagnostic_events_table_scans": scans},
    )
    results += chain_cost("postgres", samples)

    log("postgres: batches of 100")
    ours_schema = schemas.name("ours_batch")
    store = await PostgresEventStore.open(DSN, schema=ours_schema)
    raw_schema = await schemas.raw_table("raw_batch")
    conn = await asyncpg.connect(DSN)
    datastore, recorder, es_durability = await es_pg(schemas, "es_batch")
    try:
        samples = await interleaved(
            {
                "ours": lambda s: rate_for(s, StoreWriter(store, BATCH).step),
                "raw": lambda s: rate_for(s, RawPgWriter(conn, raw_schema, BATCH).step),
                "eventsourcing": sync_variant(
                    lambda s: rate_for_sync(s, EsWriter(recorder, BATCH).step)
                ),
            },
            repeats=REPEATS,
            seconds=SECONDS,
            label="postgres.batches.",
        )
    finally:
        await store.close()
        await conn.close()
        datastore.close()
    scans = await schemas.scans(ours_schema)
    results += pair(
        "postgres.batches_of_100",
        samples,
        {
            "raw": f"{raw_text}: executemany of 100 rows in one transaction, one held "
            f"connection ({es_durability})",
            "eventsourcing": f"{es_text}, 100 StoredEvents per call ({es_durability})",
        },
        extra={"diagnostic_events_table_scans": scans},
    )

    log(f"postgres: read_all over {READ_EVENTS:,} events")
    ours_schema = schemas.name("ours_read")
    store = await PostgresEventStore.open(DSN, schema=ours_schema)
    plain = await PostgresEventStore.open(DSN, schema=ours_schema, global_chain=False)
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=2)
    datastore, recorder, _ = await es_pg(schemas, "es_read")
    try:
        started = time.perf_counter()
        await fill_store(store, READ_EVENTS)
        fill_es(recorder, READ_EVENTS)
        await pool.execute(f"ANALYZE {ours_schema}.events")
        log(f"  prepared in {time.perf_counter() - started:.1f}s")
        samples = await interleaved(
            {
                "ours": lambda s: read_store(store, s),
                "unchained": lambda s: read_store(plain, s),
                "raw": lambda s: read_raw_pg(pool, ours_schema, s),
                "eventsourcing": sync_variant(lambda s: read_es(recorder, s)),
            },
            repeats=REPEATS,
            seconds=SECONDS,
            label="postgres.read_all.",
        )
    finally:
        await store.close()
        await plain.close()
        await pool.close()
        datastore.close()
    results += pair(
        "postgres.read_all",
        samples,
        {
            "raw": f"raw asyncpg SELECT of the same columns from the same table, pages of {PAGE} "
            "by position (no visibility horizon), fetch + json.loads of data",
            "eventsourcing": f"eventsourcing {ES_VERSION} select_notifications, pages of {PAGE}, "
            f"+ json.loads of state ({READ_EVENTS:,} events in its own table)",
        },
    )
    results.append(read_cost("postgres", samples))
    return results


async def postgres_settings(admin: asyncpg.Connection) -> dict[str, str]:
    names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "commit_delay")
    return {name: str(await admin.fetchval(f"SHOW {name}")) for name in names}


async def run() -> tuple[dict[str, Any], list[Result]]:
    tmp = Path(tempfile.mkdtemp(prefix="civitas-bench-eventstore-"))
    admin = await asyncpg.connect(DSN)
    schemas = Schemas(admin)
    try:
        settings = await postgres_settings(admin)
        results = await sqlite_cases(tmp)
        results += await postgres_cases(schemas)
    finally:
        await schemas.drop_all()
        await admin.close()
        shutil.rmtree(tmp, ignore_errors=True)
    machine = machine_info(
        postgres=settings.pop("server_version").split()[0],
        postgres_settings=settings,
        sqlite_dir=tempfile.gettempdir(),
        eventsourcing=ES_VERSION,
        asyncpg=version("asyncpg"),
    )
    return machine, results


def main() -> None:
    started = time.perf_counter()
    code = code_state("services/civitas/eventkit", "benchmarks")
    machine, results = asyncio.run(run())
    path = write_results(
        "eventstore",
        machine,
        results,
        code=code,
        method={
            "seconds_per_measurement": SECONDS,
            "repeats": REPEATS,
            "statistic": "median",
            "interleaved": True,
            "read_events": READ_EVENTS,
        },
    )
    print(format_table(results))
    log(f"wrote {path} in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
