"""An SQLite store from before trace contexts, opened by several processes at once (as
``civitas up`` starts a service and its relay): each open adds the missing column or
finds it added, none fails on it."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from civitas.eventkit import NewEvent, SqliteEventStore, StreamState

OPENS = 4
ROUNDS = 20


def columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(events)")]


def opened_at_once(path: Path) -> list[SqliteEventStore]:
    """The store opened in :data:`OPENS` threads released together."""
    start = threading.Barrier(OPENS)

    def open_() -> SqliteEventStore:
        start.wait()
        return SqliteEventStore(path)

    with ThreadPoolExecutor(OPENS) as pool:
        return list(pool.map(lambda _: open_(), range(OPENS)))


async def test_opens_racing_on_a_store_without_the_trace_column_add_it_once_and_all_succeed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    store = SqliteEventStore(path)
    await store.append("case-1", [NewEvent("CaseRegistered", {"n": 1})], StreamState.NO_STREAM)
    await store.close()

    for _ in range(ROUNDS):
        with sqlite3.connect(path) as conn:  # as stores were made before trace contexts
            conn.execute("ALTER TABLE events DROP COLUMN trace_context")
            conn.execute("DROP TABLE schema_migrations")
        opened = opened_at_once(path)
        for each in opened:
            assert len(await each.read_stream("case-1")) == 1
            await each.close()
        assert columns(path).count("trace_context") == 1
