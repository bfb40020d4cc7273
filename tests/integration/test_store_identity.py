"""A store made before stores had an identity is given one when it is first opened."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import asyncpg
import pytest

from civitas.eventkit import NewEvent, PostgresEventStore, SqliteEventStore, StreamState
from tests.conftest import POSTGRES_URL, drop_schema, missing_dependency, postgres_reachable


async def test_an_sqlite_store_without_an_identity_gets_one_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SqliteEventStore(path)
    await store.append("case-1", [NewEvent("Happened", {"n": 1})], StreamState.NO_STREAM)
    await store.close()
    with sqlite3.connect(path) as older:  # as a store made before identities were
        older.execute("DROP TABLE store_identity")
        older.execute("DROP TABLE schema_migrations")

    reopened = SqliteEventStore(path)
    given = await reopened.identity()
    await reopened.close()
    again = SqliteEventStore(path)

    assert uuid.UUID(given)
    assert await again.identity() == given
    assert len(await again.read_stream("case-1")) == 1
    await again.close()


@pytest.mark.postgres
async def test_a_postgres_store_without_an_identity_gets_one_and_keeps_it() -> None:
    if not await postgres_reachable():
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    store = await PostgresEventStore.open(POSTGRES_URL, schema=schema)
    await store.close()
    conn = await asyncpg.connect(POSTGRES_URL)
    await conn.execute(f"DROP TABLE {schema}.store_identity, {schema}.schema_migrations")
    await conn.close()
    try:
        reopened = await PostgresEventStore.open(POSTGRES_URL, schema=schema)
        given = await reopened.identity()
        await reopened.close()
        again = await PostgresEventStore.open(POSTGRES_URL, schema=schema)
        assert uuid.UUID(given)
        assert await again.identity() == given
        await again.close()
    finally:
        await drop_schema(schema)
