"""The embedded event store: SQLite in WAL mode with group commit.

One writer thread owns the only write connection. Appends from any number of
tasks queue up; the writer takes every append that is waiting, applies each in a
savepoint (so one failed append does not undo the others), and commits them all
with one fsync. Readers use their own connections on a small thread pool, and
because SQLite has one writer at a time, global positions become visible in order.
The same commit extends the ledger (the global chain) over the events it stores.

The schema is versioned (:mod:`.migrations`); opening a store applies what is
missing in a write transaction (``BEGIN IMMEDIATE``), so processes opening one file
at once take turns and those after the first find it done.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .audit import LedgerEntry, RawEvent
from .errors import ConcurrencyError, EventIdConflict, EventStoreError
from .files import private_file
from .hashing import GENESIS, chain, ledger_links
from .migrations import Migration, numbered, pending
from .records import (
    AppendResult,
    EventFilter,
    ExpectedVersion,
    RecordedEvent,
    check_stream_state,
)
from .store import EventStore, PreparedEvent, idempotent_result, stored_trace_context

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    applied_at  TEXT    NOT NULL,
    description TEXT    NOT NULL
)
"""

# Migration 1: the schema as the releases before versioning made it, idempotent, so
# that it also brings one of their stores (and older ones) under versioning.
_TABLES = (
    """CREATE TABLE IF NOT EXISTS events (
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
    trace_context  TEXT,
    UNIQUE (stream_id, stream_version)
)""",
    "CREATE INDEX IF NOT EXISTS events_by_category ON events (category, position)",
    "CREATE INDEX IF NOT EXISTS events_by_type ON events (type, position)",
    """CREATE TABLE IF NOT EXISTS checkpoints (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS streams (
    stream_id TEXT PRIMARY KEY,
    version   INTEGER NOT NULL,
    hash      BLOB    NOT NULL
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS ledger (
    position       INTEGER PRIMARY KEY,
    stream_id      TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    link           BLOB    NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS store_identity (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    identity TEXT    NOT NULL
)""",
)


def _create_tables(conn: sqlite3.Connection) -> None:
    """Migration 1. The store's identity is made with the tables, in their transaction,
    never replaced. A store made before events kept their trace context gets the column."""
    for statement in _TABLES:
        conn.execute(statement)
    conn.execute("INSERT OR IGNORE INTO store_identity VALUES (1, ?)", (str(uuid.uuid4()),))
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    if "trace_context" not in columns:
        conn.execute("ALTER TABLE events ADD COLUMN trace_context TEXT")


MIGRATIONS = numbered(
    Migration(1, "events, streams, checkpoints, ledger and identity tables", _create_tables),
)


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    """Apply the file's missing migrations in one write transaction: processes opening
    it at once take turns, and those after the first find them applied."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_MIGRATIONS_TABLE)
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in pending(f"event store {path}", MIGRATIONS, applied):
            migration.step(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at, description) VALUES (?, ?, ?)",
                (migration.version, datetime.now(UTC).isoformat(), migration.description),
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_COLUMNS = (
    "event_id, stream_id, stream_version, position, type, schema_version, occurred_at, "
    "actor, correlation_id, causation_id, data, hash, trace_context"
)

_INSERT_COLUMNS = (
    "event_id, stream_id, category, stream_version, type, schema_version, occurred_at, "
    "actor, correlation_id, causation_id, data, hash, trace_context"
)
_INSERT_MARKS = ", ".join("?" * 13)
_UPSERT_STREAM = (
    "INSERT INTO streams (stream_id, version, hash) VALUES (?, ?, ?) "
    "ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, hash = excluded.hash"
)

_STOP = object()


@dataclass(slots=True)
class _AppendRequest:
    stream_id: str
    category: str
    expected: ExpectedVersion
    events: list[PreparedEvent]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[AppendResult]


Outcome = tuple[_AppendRequest, AppendResult | BaseException]


def _use_wal(conn: sqlite3.Connection, attempts: int = 50) -> None:
    """Switch a file to WAL (it stays so). Several processes opening a new file at
    once can make SQLite refuse the switch at once ("database is locked") instead of
    waiting: the services of ``civitas up`` open each other's stores as they start."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as busy:
            if "locked" not in str(busy) or attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1))


_CHUNK = 5000  # SQL parameters per IN (...) list


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    _use_wal(conn)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def row_to_event(row: tuple[Any, ...]) -> RecordedEvent:
    """Decode one row selected with the store's column list."""
    return RecordedEvent(
        uuid.UUID(row[0]),
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        datetime.fromisoformat(row[6]),
        row[7],
        row[8],
        row[9],
        orjson.loads(row[10]),
        row[11],
        trace_context=stored_trace_context(row[12]),
    )


class SqliteEventStore(EventStore):
    """Event store in one SQLite file (WAL, ``synchronous=FULL``, group commit)."""

    def __init__(self, path: str | Path, *, max_group: int = 512, **options: Any) -> None:
        super().__init__(**options)
        self.path = str(path)
        self._max_group = max_group
        if self.path == ":memory:":
            raise ValueError("SqliteEventStore needs a file: WAL and readers need a path")
        private_file(Path(self.path))  # owner-only before SQLite opens it
        self._writer = _connect(self.path)
        try:
            _migrate(self._writer, self.path)
        except BaseException:
            self._writer.close()
            raise
        self._queue: queue.SimpleQueue[_AppendRequest | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._thread.start()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sqlite-reader")

    async def _identity(self) -> str:
        rows = await self._query("SELECT identity FROM store_identity", ())
        return str(rows[0][0])

    # -- writes -----------------------------------------------------------

    async def _append(
        self,
        stream_id: str,
        category: str,
        expected: ExpectedVersion,
        events: list[PreparedEvent],
    ) -> AppendResult:
        loop = asyncio.get_running_loop()
        request = _AppendRequest(stream_id, category, expected, events, loop, loop.create_future())
        self._queue.put(request)
        return await request.future

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                break
            group = [first]
            while len(group) < self._max_group:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in group
            self._commit_group([r for r in group if isinstance(r, _AppendRequest)])
            if stop:
                break
        self._writer.close()

    def _commit_group(self, group: list[_AppendRequest]) -> None:
        """Apply every waiting append in one transaction (one fsync), then settle them."""
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes = self._apply_group(group)
            except sqlite3.IntegrityError:  # a retry racing itself: go one by one
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                outcomes = [self._apply_in_savepoint(request) for request in group]
            if self.global_chain:
                _seal(conn)
            conn.execute("COMMIT")
        except BaseException as exc:  # the group failed to commit: nothing is stored
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(request, exc) for request in group]
        _settle(outcomes)

    def _apply_group(self, group: list[_AppendRequest]) -> list[Outcome]:
        """The common case, set-based, checks done in memory. A retried append fails the
        version check (then its ids are looked up) or the insert on the unique event id
        (then the caller goes one append at a time): either way it gets its stored result."""
        conn = self._writer
        heads: dict[str, tuple[int, bytes]] = {
            row[0]: (row[1], row[2])
            for row in _chunked(
                conn,
                "SELECT stream_id, version, hash FROM streams WHERE stream_id IN ({})",
                list({r.stream_id for r in group}),
            )
        }
        position = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
        rows: list[tuple[Any, ...]] = []
        outcomes: list[Outcome] = []
        queued: dict[str, tuple[str, int, int]] = {}  # event id -> stream, version, position
        for request in group:
            head = heads.get(request.stream_id)
            try:
                check_stream_state(request.stream_id, request.expected, head[0] if head else None)
            except ConcurrencyError as exc:  # a conflict, or an exact retry of a stored append
                ids = [str(p.event.event_id) for p in request.events]
                earlier = [(i, *queued[i]) for i in ids if i in queued]
                retry = idempotent_result(request.stream_id, ids, earlier) if earlier else None
                outcomes.append((request, retry or self._stored_or(exc, request)))
                continue
            version, last_hash = head if head else (-1, GENESIS)
            for prepared in request.events:
                version, position = version + 1, position + 1
                last_hash = chain(last_hash, prepared.digest)
                rows.append((position, *_row(request, prepared, version, last_hash)))
                queued[str(prepared.event.event_id)] = (request.stream_id, version, position)
            if request.events:
                heads[request.stream_id] = (version, last_hash)
            outcomes.append((request, AppendResult(version, position if request.events else None)))
        conn.executemany(
            f"INSERT INTO events (position, {_INSERT_COLUMNS}) VALUES (?, {_INSERT_MARKS})", rows
        )
        conn.executemany(_UPSERT_STREAM, [(s, v, h) for s, (v, h) in heads.items()])
        return outcomes

    def _stored_or(
        self, error: ConcurrencyError, request: _AppendRequest
    ) -> AppendResult | BaseException:
        try:
            return self._find_duplicate(request) or error
        except EventIdConflict as conflict:
            return conflict

    def _apply_in_savepoint(self, request: _AppendRequest) -> Outcome:
        conn = self._writer
        conn.execute("SAVEPOINT one_append")
        try:
            result = self._apply(request)
            conn.execute("RELEASE one_append")
            return request, result
        except (EventStoreError, sqlite3.IntegrityError) as exc:
            conn.execute("ROLLBACK TO one_append")
            conn.execute("RELEASE one_append")
            return request, _as_store_error(request, exc)

    def _apply(self, request: _AppendRequest) -> AppendResult:
        conn = self._writer
        duplicate = self._find_duplicate(request)
        if duplicate is not None:
            return duplicate
        row = conn.execute(
            "SELECT version, hash FROM streams WHERE stream_id = ?", (request.stream_id,)
        ).fetchone()
        current, last_hash = (row[0], row[1]) if row else (None, GENESIS)
        check_stream_state(request.stream_id, request.expected, current)
        if not request.events:
            return AppendResult(-1 if current is None else current, None)
        version = -1 if current is None else current
        rows = []
        for prepared in request.events:
            version += 1
            last_hash = chain(last_hash, prepared.digest)
            rows.append(_row(request, prepared, version, last_hash))
        conn.executemany(f"INSERT INTO events ({_INSERT_COLUMNS}) VALUES ({_INSERT_MARKS})", rows)
        conn.execute(_UPSERT_STREAM, (request.stream_id, version, last_hash))
        position = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        return AppendResult(version, position)

    def _find_duplicate(self, request: _AppendRequest) -> AppendResult | None:
        if not request.events:
            return None
        ids = [str(p.event.event_id) for p in request.events]
        marks = ",".join("?" * len(ids))
        found = self._writer.execute(
            f"SELECT event_id, stream_id, stream_version, position FROM events "
            f"WHERE event_id IN ({marks}) ORDER BY position",
            ids,
        ).fetchall()
        return idempotent_result(request.stream_id, ids, found)

    # -- reads ------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            return self._reader().execute(sql, params).fetchall()

        return await asyncio.wrap_future(self._pool.submit(run))

    async def _read_stream(
        self, stream_id: str, start: int, backwards: bool, limit: int | None
    ) -> list[RecordedEvent]:
        sql = (
            "stream_version <= ? ORDER BY stream_version DESC"
            if backwards
            else "stream_version >= ? ORDER BY stream_version"
        )
        rows = await self._query(
            f"SELECT {_COLUMNS} FROM events WHERE stream_id = ? AND {sql} LIMIT ?",
            (stream_id, start, limit if limit is not None else -1),
        )
        return [row_to_event(row) for row in rows]

    async def _read_all(
        self, after: int, limit: int, filter: EventFilter | None
    ) -> list[RecordedEvent]:
        where, params = _filter_sql(filter)
        rows = await self._query(
            f"SELECT {_COLUMNS} FROM events WHERE position > ?{where} ORDER BY position LIMIT ?",
            (after, *params, limit),
        )
        return [row_to_event(row) for row in rows]

    async def _read_raw(self, after: int, limit: int) -> list[RawEvent]:
        rows = await self._query(
            "SELECT position, stream_id, stream_version, event_id, type, schema_version, "
            "occurred_at, actor, correlation_id, causation_id, data, hash, category FROM events "
            "WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )
        return [RawEvent(*row) for row in rows]

    async def _seal(self) -> int:
        def run() -> int:
            conn = _connect(self.path)
            try:
                conn.execute("BEGIN IMMEDIATE")  # takes turns with the writer thread
                sealed = _seal(conn)
                conn.execute("COMMIT")
                return sealed
            finally:
                conn.close()

        return await asyncio.to_thread(run)

    async def _verify_bounds(self) -> tuple[dict[str, tuple[int, bytes]], int, bool]:
        def run() -> tuple[dict[str, tuple[int, bytes]], int, bool]:
            conn = self._reader()
            conn.execute("BEGIN")  # one snapshot: the commit that stores events seals them
            try:
                sealed_to = conn.execute("SELECT coalesce(max(position), 0) FROM ledger")
                heads = conn.execute("SELECT stream_id, version, hash FROM streams")
                found = int(sealed_to.fetchone()[0]), heads.fetchall()
            finally:
                conn.execute("COMMIT")
            return {row[0]: (row[1], bytes(row[2])) for row in found[1]}, found[0], True

        return await asyncio.wrap_future(self._pool.submit(run))

    async def _read_ledger(self, after: int, limit: int) -> list[LedgerEntry]:
        rows = await self._query(
            "SELECT position, stream_id, stream_version, link FROM ledger "
            "WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )
        return [LedgerEntry(*row) for row in rows]

    async def _stream_heads(self) -> dict[str, tuple[int, bytes]]:
        rows = await self._query("SELECT stream_id, version, hash FROM streams", ())
        return {row[0]: (row[1], bytes(row[2])) for row in rows}

    async def _head_position(self) -> int:
        rows = await self._query("SELECT coalesce(max(position), 0) FROM events", ())
        return int(rows[0][0])

    async def _load_checkpoint(self, name: str) -> int:
        rows = await self._query("SELECT position FROM checkpoints WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    async def _save_checkpoint(self, name: str, position: int) -> None:
        await self._query(
            "INSERT INTO checkpoints (name, position) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (name, position),
        )

    async def _close(self) -> None:
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._pool.shutdown(wait=True)
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()


def _row(
    request: _AppendRequest, prepared: PreparedEvent, version: int, digest_chain: bytes
) -> tuple[Any, ...]:
    return (
        str(prepared.event.event_id),
        request.stream_id,
        request.category,
        version,
        *prepared.content_columns(),
        digest_chain,
        prepared.trace_column(),
    )


def _seal(conn: sqlite3.Connection) -> int:
    """Extend the ledger over every event after its last entry, in the caller's write
    transaction: the events the writer has just inserted (or, once, a store's whole
    history from before the ledger)."""
    tail = conn.execute("SELECT position, link FROM ledger ORDER BY position DESC LIMIT 1")
    position, link = tail.fetchone() or (0, GENESIS)
    rows = conn.execute(
        "SELECT position, stream_id, stream_version, hash FROM events WHERE position > ? "
        "ORDER BY position",
        (position,),
    ).fetchall()
    entries = ledger_links(bytes(link), rows)
    conn.executemany(
        "INSERT INTO ledger (position, stream_id, stream_version, link) VALUES (?, ?, ?, ?)",
        entries,
    )
    return len(entries)


def _chunked(conn: sqlite3.Connection, sql: str, values: list[str]) -> list[tuple[Any, ...]]:
    """Run ``sql`` with its ``IN ({})`` list filled in chunks; all rows found."""
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(values), _CHUNK):
        chunk = values[start : start + _CHUNK]
        rows += conn.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
    return rows


def _settle(outcomes: list[Outcome]) -> None:
    """Hand the results back: one wake-up per event loop, not one per append."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, mine in by_loop.items():
        loop.call_soon_threadsafe(_settle_in_loop, mine)


def _settle_in_loop(outcomes: list[Outcome]) -> None:
    for request, outcome in outcomes:
        if request.future.done():
            continue  # the caller gave up (cancelled); the append stands
        if isinstance(outcome, BaseException):
            request.future.set_exception(outcome)
        else:
            request.future.set_result(outcome)


def _filter_sql(filter: EventFilter | None) -> tuple[str, tuple[str, ...]]:
    if filter is None:
        return "", ()
    where = ""
    params: tuple[str, ...] = ()
    if filter.categories:
        where += f" AND category IN ({','.join('?' * len(filter.categories))})"
        params += filter.categories
    if filter.event_types:
        where += f" AND type IN ({','.join('?' * len(filter.event_types))})"
        params += filter.event_types
    return where, params


def _as_store_error(request: _AppendRequest, exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.IntegrityError):
        return EventIdConflict(request.stream_id, f"write refused: {exc}")
    return exc
