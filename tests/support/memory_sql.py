"""SQL run on what a memory store keeps, as an insider runs it on a SQL store's tables.

The kept rows go into an SQLite database in memory with the SQLite store's own
tables, the statements run there, and the rows they leave replace what the store
keeps: so the tampering tests written in SQL judge the memory store's ``verify`` too.
"""

from __future__ import annotations

import dataclasses
import sqlite3

from civitas.eventkit import MemoryDatabase
from civitas.eventkit.audit import LedgerEntry, RawEvent
from civitas.eventkit.sqlite import MIGRATIONS as SQLITE_MIGRATIONS

_EVENT_COLUMNS = ", ".join(field.name for field in dataclasses.fields(RawEvent))
_MARKS = ", ".join("?" * len(dataclasses.fields(RawEvent)))


def run_sql(database: MemoryDatabase, script: str, *params: object) -> None:
    """Run ``script`` (statements separated by ``;``, or one statement with ``?``
    marks for ``params``) on ``database``'s kept rows."""
    conn = sqlite3.connect(":memory:")
    try:
        for migration in SQLITE_MIGRATIONS:  # the SQLite store's own tables
            migration.step(conn)
        with database.lock:
            _load(conn, database)
        if params:
            with conn:
                conn.execute(script, params)
        else:
            conn.executescript(f"BEGIN; {script}; COMMIT;")
        with database.lock:
            _store(conn, database)
    finally:
        conn.close()


def _load(conn: sqlite3.Connection, database: MemoryDatabase) -> None:
    conn.executemany(
        f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({_MARKS})",
        [dataclasses.astuple(row) for row in database.events],
    )
    conn.executemany(
        "INSERT INTO streams (stream_id, version, hash) VALUES (?, ?, ?)",
        [(stream, *head) for stream, head in database.streams.items()],
    )
    conn.executemany(
        "INSERT INTO ledger (position, stream_id, stream_version, link) VALUES (?, ?, ?, ?)",
        [dataclasses.astuple(entry) for entry in database.ledger],
    )


def _store(conn: sqlite3.Connection, database: MemoryDatabase) -> None:
    database.events[:] = [
        RawEvent(*row) for row in conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events")
    ]
    database.streams.clear()
    for stream, version, digest in conn.execute("SELECT stream_id, version, hash FROM streams"):
        database.streams[stream] = (version, digest)
    database.ledger[:] = [
        LedgerEntry(*row)
        for row in conn.execute("SELECT position, stream_id, stream_version, link FROM ledger")
    ]
    database.reindex()
