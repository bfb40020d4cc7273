"""An event store in memory, for fast tests and demos: nothing survives the process.

It has the meaning of the other backends and passes their contract suite: expected
versions, idempotent retries of the same event ids, both hash chains, each stream's
head record, and the ledger, which every append extends as it stores (as SQLite's
writer does), so ``verify`` judges it as it judges SQLite. Events are kept as the SQL
backends keep their rows (canonical JSON, UTC ISO timestamps, the stream hash), in a
:class:`MemoryDatabase` that several stores may share, as several stores share one
SQLite file: a store closed and another opened over the same database finds the
events and checkpoints. Each operation yields to the event loop once, as I/O would,
so tests of concurrent callers interleave as they do on a real store.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Any

import orjson

from .audit import LedgerEntry, RawEvent
from .hashing import GENESIS, chain, ledger_links
from .records import (
    AppendResult,
    EventFilter,
    ExpectedVersion,
    RecordedEvent,
    check_stream_state,
)
from .store import EventStore, PreparedEvent, idempotent_result, stored_trace_context


def _position(row: RawEvent | LedgerEntry) -> int:
    return row.position


def _revision(row: RawEvent) -> int:
    return row.stream_version


@dataclass
class MemoryDatabase:
    """What a memory store keeps, as a SQL store keeps its tables: the events in
    global order, each stream's head record (revision, hash), the ledger, and the
    checkpoints. A test may change them behind the store's back, then ``reindex``."""

    events: list[RawEvent] = field(default_factory=list)
    streams: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    ledger: list[LedgerEntry] = field(default_factory=list)
    checkpoints: dict[str, int] = field(default_factory=dict)
    traces: dict[str, str] = field(default_factory=dict)  # event id -> trace context (JSON)
    identity: str = field(default_factory=lambda: str(uuid.uuid4()))  # made with it, kept
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _by_stream: dict[str, list[RawEvent]] = field(default_factory=dict, repr=False)
    _by_id: dict[str, RawEvent] = field(default_factory=dict, repr=False)

    def reindex(self) -> None:
        """Sort what is kept and rebuild the lookups from the events as they stand."""
        self.events.sort(key=_position)
        self.ledger.sort(key=_position)
        self._by_stream, self._by_id = {}, {}
        for row in self.events:
            self._by_stream.setdefault(row.stream_id, []).append(row)
            self._by_id[row.event_id] = row
        for rows in self._by_stream.values():
            rows.sort(key=_revision)

    def add(self, rows: list[RawEvent]) -> None:
        """Store rows that follow every stored position and their stream's revisions."""
        self.events += rows
        for row in rows:
            self._by_stream.setdefault(row.stream_id, []).append(row)
            self._by_id[row.event_id] = row

    def stored(self, event_ids: list[str]) -> list[tuple[str, str, int, int]]:
        """Which of these ids are stored: (id, stream, revision, position), in order."""
        rows = sorted((self._by_id[i] for i in event_ids if i in self._by_id), key=_position)
        return [(r.event_id, r.stream_id, r.stream_version, r.position) for r in rows]

    def stream(self, stream_id: str) -> list[RawEvent]:
        """One stream's rows, by revision."""
        return self._by_stream.get(stream_id, [])

    def after(self, position: int) -> list[RawEvent]:
        """The rows after a global position."""
        return self.events[bisect_right(self.events, position, key=_position) :]

    def append(
        self,
        stream_id: str,
        category: str,
        expected: ExpectedVersion,
        events: list[PreparedEvent],
        seal: bool = True,
    ) -> AppendResult:
        """One append, as every backend means it: the stored result for the same ids
        again, else the version check, the stream's chain and head, and the ledger."""
        ids = [str(prepared.event.event_id) for prepared in events]
        earlier = idempotent_result(stream_id, ids, self.stored(ids))
        if earlier is not None:
            return earlier
        head = self.streams.get(stream_id)
        check_stream_state(stream_id, expected, head[0] if head else None)
        if not events:
            return AppendResult(head[0] if head else -1, None)
        version, last_hash = head or (-1, GENESIS)
        rows = []
        for position, prepared in enumerate(events, self.head_position + 1):
            version, last_hash = version + 1, chain(last_hash, prepared.digest)
            rows.append(_row(position, stream_id, category, version, prepared, last_hash))
            if trace := prepared.trace_column():
                self.traces[str(prepared.event.event_id)] = trace
        self.add(rows)
        self.streams[stream_id] = (version, last_hash)
        if seal:
            self.seal()
        return AppendResult(version, rows[-1].position)

    @property
    def head_position(self) -> int:
        return self.events[-1].position if self.events else 0

    def seal(self) -> int:
        """Extend the ledger over every event after its last entry; how many."""
        last = self.ledger[-1] if self.ledger else LedgerEntry(0, "", 0, GENESIS)
        rows = [
            (r.position, r.stream_id, r.stream_version, r.hash) for r in self.after(last.position)
        ]
        entries = ledger_links(bytes(last.link), rows)
        self.ledger += [LedgerEntry(*entry) for entry in entries]
        return len(entries)


class InMemoryEventStore(EventStore):
    """The event store port in memory (tests and demos only: it loses everything at
    exit). Stores built over one :class:`MemoryDatabase` share it."""

    def __init__(self, database: MemoryDatabase | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.database = database if database is not None else MemoryDatabase()

    async def _append(
        self,
        stream_id: str,
        category: str,
        expected: ExpectedVersion,
        events: list[PreparedEvent],
    ) -> AppendResult:
        await asyncio.sleep(0)
        with self.database.lock:
            return self.database.append(stream_id, category, expected, events, self.global_chain)

    async def _read_stream(
        self, stream_id: str, start: int, backwards: bool, limit: int | None
    ) -> list[RecordedEvent]:
        await asyncio.sleep(0)
        with self.database.lock:
            rows = self.database.stream(stream_id)
            if backwards:
                chosen = rows[: bisect_right(rows, start, key=_revision)][::-1]
            else:
                chosen = rows[bisect_left(rows, start, key=_revision) :]
        return [self._recorded(row) for row in chosen[:limit]]

    async def _read_all(
        self, after: int, limit: int, filter: EventFilter | None
    ) -> list[RecordedEvent]:
        await asyncio.sleep(0)
        chosen: list[RawEvent] = []
        with self.database.lock:
            for row in self.database.after(after):
                if filter is None or _passes(filter, row):
                    chosen.append(row)
                    if len(chosen) == limit:
                        break
        return [self._recorded(row) for row in chosen]

    async def _read_raw(self, after: int, limit: int) -> list[RawEvent]:
        await asyncio.sleep(0)
        with self.database.lock:
            return self.database.after(after)[:limit]

    async def _seal(self) -> int:
        with self.database.lock:
            return self.database.seal()

    async def _verify_bounds(self) -> tuple[dict[str, tuple[int, bytes]], int, bool]:
        """Heads and the ledger's last position at one moment; every append seals what
        it stores, so an event within the heads but not in the ledger was put there
        behind the store's back (as on SQLite)."""
        with self.database.lock:
            ledger = self.database.ledger
            return dict(self.database.streams), ledger[-1].position if ledger else 0, True

    async def _read_ledger(self, after: int, limit: int) -> list[LedgerEntry]:
        await asyncio.sleep(0)
        with self.database.lock:
            ledger = self.database.ledger
            start = bisect_right(ledger, after, key=_position)
            return ledger[start : start + limit]

    async def _stream_heads(self) -> dict[str, tuple[int, bytes]]:
        with self.database.lock:
            return dict(self.database.streams)

    async def _head_position(self) -> int:
        await asyncio.sleep(0)
        with self.database.lock:
            return self.database.head_position

    async def _load_checkpoint(self, name: str) -> int:
        with self.database.lock:
            return self.database.checkpoints.get(name, 0)

    async def _save_checkpoint(self, name: str, position: int) -> None:
        with self.database.lock:
            self.database.checkpoints[name] = position

    async def _identity(self) -> str:
        return self.database.identity

    async def _close(self) -> None:
        """Nothing to release: the database lives as long as someone holds it."""

    def _recorded(self, row: RawEvent) -> RecordedEvent:
        """Decode a kept row afresh, so no caller shares (or changes) what is stored."""
        return RecordedEvent(
            event_id=uuid.UUID(row.event_id),
            stream_id=row.stream_id,
            stream_version=row.stream_version,
            position=row.position,
            type=row.type,
            schema_version=row.schema_version,
            occurred_at=row.moment,
            actor=row.actor,
            correlation_id=row.correlation_id,
            causation_id=row.causation_id,
            data=orjson.loads(row.data),
            hash=bytes(row.hash),
            trace_context=stored_trace_context(self.database.traces.get(row.event_id)),
        )


def _row(
    position: int,
    stream_id: str,
    category: str,
    version: int,
    prepared: PreparedEvent,
    digest_chain: bytes,
) -> RawEvent:
    event_id = str(prepared.event.event_id)
    content = prepared.content_columns()
    return RawEvent(position, stream_id, version, event_id, *content, digest_chain, category)


def _passes(filter: EventFilter, row: RawEvent) -> bool:
    """The filter on the stored category and type, as the SQL backends apply it."""
    return (not filter.categories or row.category in filter.categories) and (
        not filter.event_types or row.type in filter.event_types
    )
