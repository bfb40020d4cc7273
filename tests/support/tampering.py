"""Changes made to a store's rows behind its back, as someone with access to the
database file or server would: what the tampering tests ask ``verify`` to find."""

from __future__ import annotations

import sqlite3

import pytest

from civitas.eventkit import EventStore, InMemoryEventStore, PostgresEventStore, SqliteEventStore
from tests.support.memory_sql import run_sql


async def tamper(store: EventStore, sql: str) -> None:
    """Run ``sql`` (statements separated by ``;``) on the store's own tables, behind its
    back (``{events}``, ``{streams}`` and ``{ledger}`` name them), as someone with
    access to the database file or server would."""
    if isinstance(store, InMemoryEventStore):  # its kept rows, through SQLite's tables
        run_sql(store.database, sql.format(events="events", streams="streams", ledger="ledger"))
        return
    if not isinstance(store, SqliteEventStore | PostgresEventStore):
        pytest.skip("KurrentDB's log cannot be changed in place from outside the server")
    prefix = f"{store.schema}." if isinstance(store, PostgresEventStore) else ""
    tables = {t: prefix + t for t in ("events", "streams", "ledger")}
    if isinstance(store, SqliteEventStore):
        conn = sqlite3.connect(store.path)
        with conn:
            conn.executescript(f"BEGIN; {sql.format(**tables)}; COMMIT;")
        conn.close()
    else:
        await store._pool.execute(sql.format(**tables))
