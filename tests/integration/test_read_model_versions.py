"""Read-model tables made by many at once, and read models rebuilt once per new version
(``civitas.eventkit.readmodels``), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest
import sqlalchemy as sa

from civitas.eventkit import (
    NewEvent,
    Projection,
    ProjectionRunner,
    RecordedEvent,
    SqliteEventStore,
    StoreFeed,
    StreamState,
    create_read_model_engine,
    handles,
    readmodels,
)

old_shape, new_shape = sa.MetaData(), sa.MetaData()
notes_v1 = sa.Table(
    "rmv_notes",
    old_shape,
    sa.Column("note_id", sa.String(40), primary_key=True),
    sa.Column("text", sa.String(100), nullable=False),
)
notes_v2 = sa.Table(
    "rmv_notes",
    new_shape,
    sa.Column("note_id", sa.String(40), primary_key=True),
    sa.Column("text", sa.String(100), nullable=False),
    sa.Column("length", sa.Integer, nullable=False),
)


class NotesV1(Projection):
    name = "tests_notes"
    tables = (notes_v1,)

    def create(self, conn: sa.Connection) -> None:
        readmodels.create_tables(conn, old_shape)

    def clear(self, conn: sa.Connection) -> None:
        conn.execute(notes_v1.delete())

    @handles("NoteTaken")
    def on_note(self, event: RecordedEvent, conn: sa.Connection) -> None:
        conn.execute(notes_v1.insert().values(note_id=event.aggregate_id, text=event.data["text"]))


class NotesV2(Projection):
    """The same read model with a column more: version 2."""

    name = "tests_notes"
    tables = (notes_v2,)
    version = 2
    applied: ClassVar[list[str]] = []

    def create(self, conn: sa.Connection) -> None:
        readmodels.create_tables(conn, new_shape)

    def clear(self, conn: sa.Connection) -> None:
        conn.execute(notes_v2.delete())

    @handles("NoteTaken")
    def on_note(self, event: RecordedEvent, conn: sa.Connection) -> None:
        text = event.data["text"]
        conn.execute(
            notes_v2.insert().values(note_id=event.aggregate_id, text=text, length=len(text))
        )
        self.applied.append(event.aggregate_id)


async def take_notes(store: SqliteEventStore, *texts: str, first: int = 0) -> None:
    for number, text in enumerate(texts, first):
        event = NewEvent("NoteTaken", {"text": text})
        await store.append(f"note-{number}", [event], StreamState.NO_STREAM)


def rows(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text("SELECT * FROM rmv_notes ORDER BY 1"))]


async def test_a_newer_version_rebuilds_its_read_model_once_in_its_new_shape(
    tmp_path: Path, read_model_urls: Callable[[str], str]
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await take_notes(store, "leak", "lamp")
    engine = create_read_model_engine(read_model_urls("live"))
    await ProjectionRunner(NotesV1(), StoreFeed(store), engine).catch_up()
    assert rows(engine) == [("0", "leak"), ("1", "lamp")]
    NotesV2.applied.clear()

    await ProjectionRunner(NotesV2(), StoreFeed(store), engine).catch_up()
    await take_notes(store, "stairs", first=2)
    head = await ProjectionRunner(NotesV2(), StoreFeed(store), engine).catch_up()

    assert rows(engine) == [("0", "leak", 4), ("1", "lamp", 4), ("2", "stairs", 6)]
    assert NotesV2.applied == ["0", "1", "2"]  # rebuilt once, then went on
    assert head == await store.head_position()
    with engine.connect() as conn:
        assert readmodels.found_version(conn, "tests_notes", (notes_v2,)) == 2
    engine.dispose()
    await store.close()


async def test_a_read_model_made_before_versions_were_kept_counts_as_version_one(
    tmp_path: Path, read_model_urls: Callable[[str], str]
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await take_notes(store, "bench")
    engine = create_read_model_engine(read_model_urls("live"))
    await ProjectionRunner(NotesV1(), StoreFeed(store), engine).catch_up()
    with engine.begin() as conn:  # as the release before versions left it
        conn.execute(readmodels.versions_table.delete())

    await ProjectionRunner(NotesV2(), StoreFeed(store), engine).catch_up()

    assert rows(engine) == [("0", "bench", 5)]
    engine.dispose()
    await store.close()


async def test_an_older_release_refuses_a_newer_read_model_and_changes_nothing(
    tmp_path: Path, read_model_urls: Callable[[str], str]
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await take_notes(store, "gate")
    engine = create_read_model_engine(read_model_urls("live"))
    await ProjectionRunner(NotesV2(), StoreFeed(store), engine).catch_up()

    with pytest.raises(readmodels.ReadModelTooNew, match=r"version 2 .* knows version 1"):
        await ProjectionRunner(NotesV1(), StoreFeed(store), engine).setup()

    assert rows(engine) == [("0", "gate", 4)]
    engine.dispose()
    await store.close()


def test_many_engines_making_the_same_tables_at_once_all_succeed(
    read_model_urls: Callable[[str], str],
) -> None:
    many = sa.MetaData()
    for number in range(12):
        sa.Table(f"rmv_t{number}", many, sa.Column("x", sa.Integer, primary_key=True))
    url = read_model_urls("together")  # on PostgreSQL, its schema does not exist yet
    engines = [create_read_model_engine(url) for _ in range(8)]
    start, failures = threading.Barrier(len(engines)), []

    def make(engine: sa.Engine) -> None:
        start.wait()
        try:
            readmodels.in_own_transaction(engine, many)
        except Exception as error:
            failures.append(error)

    threads = [threading.Thread(target=make, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert {f"rmv_t{n}" for n in range(12)} <= set(sa.inspect(engines[0]).get_table_names())
    for engine in engines:
        engine.dispose()
