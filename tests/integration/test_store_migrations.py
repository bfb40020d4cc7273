"""Versioned migrations of the event stores: a store made by the release before them
is upgraded once and keeps every event verifiable; stores opened by many processes at
once are migrated once; a store migrated beyond the code is refused."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from civitas.eventkit import (
    EventStore,
    NewEvent,
    PostgresEventStore,
    SqliteEventStore,
    StreamState,
)
from civitas.eventkit import postgres as pg_store
from civitas.eventkit import sqlite as sqlite_store
from civitas.eventkit.migrations import SchemaTooNew
from tests.conftest import POSTGRES_URL, drop_schema, missing_dependency, postgres_reachable
from tests.support.previous_release import previous_release
from tests.support.racing_opens import open_at_once

PG_VERSIONS = [m.version for m in pg_store.MIGRATIONS]
SQLITE_VERSIONS = [m.version for m in sqlite_store.MIGRATIONS]


async def fill(store: EventStore, streams: int = 5, each: int = 6) -> None:
    for s in range(streams):
        for n in range(each):
            expected = n - 1 if n else StreamState.NO_STREAM
            await store.append(f"case-{s}", [NewEvent("Happened", {"n": n})], expected)


async def assert_all_verify(store: EventStore, events: int) -> None:
    await store.seal()
    report = await store.verify()
    assert report.intact, report.broken
    assert (report.events, report.sealed) == (events, events)


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    if not await postgres_reachable():
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}")
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        await drop_schema(name)


async def pg_versions(schema: str) -> list[int]:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        rows = await conn.fetch(f"SELECT version FROM {schema}.schema_migrations ORDER BY version")
    finally:
        await conn.close()
    return [row[0] for row in rows]


def sqlite_versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        return [row[0] for row in rows]


@pytest.mark.postgres
async def test_a_postgres_store_of_the_previous_release_is_migrated_once_and_keeps_its_events(
    schema: str,
) -> None:
    old = await previous_release("postgres").PostgresEventStore.open(POSTGRES_URL, schema=schema)
    await fill(old)
    before = await old.read_all()
    await old.close()

    store = await PostgresEventStore.open(POSTGRES_URL, schema=schema)
    try:
        assert await pg_versions(schema) == PG_VERSIONS
        assert await store.read_all() == before
        await assert_all_verify(store, 30)
        await store.append("case-0", [NewEvent("Happened", {"n": 6})], 5)
        await store.append("case-new", [NewEvent("Happened", {"n": 0})], StreamState.NO_STREAM)
        assert len(await store.read_all()) == 32
        await assert_all_verify(store, 32)
    finally:
        await store.close()
    again = await PostgresEventStore.open(POSTGRES_URL, schema=schema)
    await again.close()
    assert await pg_versions(schema) == PG_VERSIONS


@pytest.mark.postgres
async def test_the_previous_release_cannot_open_a_migrated_postgres_store(schema: str) -> None:
    """It would put back its append, which marks nothing in flight: refused, and its
    transaction changes nothing."""
    store = await PostgresEventStore.open(POSTGRES_URL, schema=schema)
    await fill(store, streams=1, each=2)
    conn = await asyncpg.connect(POSTGRES_URL)
    function = f"SELECT pg_get_functiondef('{schema}.append_events'::regproc)"
    try:
        before = await conn.fetchval(function)
        with pytest.raises(asyncpg.PostgresError, match="versioned"):
            await previous_release("postgres").PostgresEventStore.open(POSTGRES_URL, schema=schema)
        assert await conn.fetchval(function) == before
        assert "pg_advisory_xact_lock_shared" in before
        await store.append("case-0", [NewEvent("Happened", {"n": 2})], 1)
        await assert_all_verify(store, 3)
    finally:
        await conn.close()
        await store.close()


@pytest.mark.postgres
async def test_a_postgres_store_migrated_beyond_this_code_is_refused_naming_both_versions(
    schema: str,
) -> None:
    store = await PostgresEventStore.open(POSTGRES_URL, schema=schema)
    await store.close()
    newer = PG_VERSIONS[-1] + 1
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(
            f"INSERT INTO {schema}.schema_migrations (version, description) "
            "VALUES ($1, 'from a newer release')",
            newer,
        )
        with pytest.raises(SchemaTooNew) as refused:
            await PostgresEventStore.open(POSTGRES_URL, schema=schema)
    finally:
        await conn.close()

    assert f"at schema version {newer}" in str(refused.value)
    assert f"versions up to {PG_VERSIONS[-1]}" in str(refused.value)
    assert await pg_versions(schema) == [*PG_VERSIONS, newer]


@pytest.mark.postgres
async def test_a_schema_made_meanwhile_by_a_read_model_engine_does_not_fail_the_open(
    schema: str,
) -> None:
    """A service's event store and its read models share a schema by default; the read
    models make it under a lock of their own, so the store's CREATE SCHEMA IF NOT EXISTS
    can wait on theirs and then find it made (a unique violation): the open goes on."""
    other = await asyncpg.connect(POSTGRES_URL)
    try:
        making = other.transaction()
        await making.start()
        await other.execute(f"CREATE SCHEMA {schema}")  # not committed yet
        opening = asyncio.create_task(PostgresEventStore.open(POSTGRES_URL, schema=schema))
        await asyncio.sleep(0.5)  # the open now waits on the uncommitted schema
        assert not opening.done()
        await making.commit()
        store = await asyncio.wait_for(opening, 30)
    finally:
        await other.close()
    try:
        await store.append("case-1", [NewEvent("Opened", {})], StreamState.NO_STREAM)
        assert await pg_versions(schema) == PG_VERSIONS
    finally:
        await store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("opens", [2, 8])
async def test_postgres_stores_opened_at_once_are_migrated_once(schema: str, opens: int) -> None:
    for round_ in range(3):
        name = f"{schema}_{round_}" if round_ else schema
        stores = await asyncio.gather(
            *(PostgresEventStore.open(POSTGRES_URL, schema=name, min_size=1) for _ in range(opens))
        )
        try:
            for n, store in enumerate(stores):
                await store.append(
                    f"case-p{n}", [NewEvent("Opened", {"n": n})], StreamState.NO_STREAM
                )
            assert len(await stores[0].read_all()) == opens
            assert await pg_versions(name) == PG_VERSIONS
        finally:
            for store in stores:
                await store.close()
            if round_:
                await drop_schema(name)


async def test_an_sqlite_store_of_the_previous_release_is_migrated_once_and_keeps_its_events(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    old = previous_release("sqlite").SqliteEventStore(path)
    await fill(old)
    before = await old.read_all()
    await old.close()

    store = SqliteEventStore(path)
    try:
        assert sqlite_versions(path) == SQLITE_VERSIONS
        assert await store.read_all() == before
        await assert_all_verify(store, 30)
        await store.append("case-0", [NewEvent("Happened", {"n": 6})], 5)
        await assert_all_verify(store, 31)
    finally:
        await store.close()
    await SqliteEventStore(path).close()
    assert sqlite_versions(path) == SQLITE_VERSIONS


async def test_an_sqlite_store_migrated_beyond_this_code_is_refused_naming_both_versions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    await SqliteEventStore(path).close()
    newer = SQLITE_VERSIONS[-1] + 1
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?, '2030-01-01T00:00:00+00:00', 'newer')",
            (newer,),
        )

    with pytest.raises(SchemaTooNew) as refused:
        SqliteEventStore(path)

    assert f"at schema version {newer}" in str(refused.value)
    assert f"versions up to {SQLITE_VERSIONS[-1]}" in str(refused.value)
    assert sqlite_versions(path) == [*SQLITE_VERSIONS, newer]


@pytest.mark.parametrize("processes", [2, 8])
def test_sqlite_stores_opened_by_processes_at_once_are_migrated_once(
    tmp_path: Path, processes: int
) -> None:
    for round_ in range(2):
        path = tmp_path / f"events-{round_}.db"

        assert open_at_once(str(path), processes) == [0] * processes
        assert sqlite_versions(path) == SQLITE_VERSIONS
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == processes
            assert conn.execute("SELECT count(*) FROM store_identity").fetchone()[0] == 1
