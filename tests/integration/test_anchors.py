"""Signed anchors outside the store: an attacker who rewrites the database and recomputes
every hash in it is caught by the last anchor, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from civitas.chassis.anchoring import Anchorer, AnchorSettings
from civitas.eventkit import (
    EventStore,
    InMemoryEventStore,
    NewEvent,
    PostgresEventStore,
    SqliteEventStore,
    StreamState,
)
from civitas.eventkit.anchors import (
    AnchorError,
    StoreTree,
    load_or_create_key,
    read_anchors,
    unextended,
)
from civitas.eventkit.hashing import GENESIS, canonical_json, chain
from tests.conftest import StoreFactory
from tests.support.memory_sql import run_sql


async def fill(store: EventStore, streams: int = 3, events: int = 4) -> None:
    for s in range(streams):
        batch = [NewEvent("Paid", {"fen": 100 * s + e, "payee": f"p{e}"}) for e in range(events)]
        await store.append(f"account-a{s}", batch, StreamState.NO_STREAM)


async def execute(store: EventStore, sql: str, *args: object) -> None:
    """Plain SQL, as an insider with write access to the database would run it."""
    plain = sql.replace("{s}.", "").replace("$1", "?").replace("$2", "?")
    if isinstance(store, InMemoryEventStore):
        run_sql(store.database, plain, *args)
    elif isinstance(store, SqliteEventStore):
        import sqlite3

        with sqlite3.connect(store.path) as conn:
            conn.execute(plain, args)
    else:
        if not isinstance(store, PostgresEventStore):
            pytest.skip("only a SQL store is rewritten with SQL")
        await store._pool.execute(sql.replace("{s}", store.schema), *args)


async def rewrite_and_rehash(store: EventStore, stream_id: str, revision: int) -> None:
    """Change one event's data, then recompute its stream's hashes and its head record."""
    rows = [r for r in await store._read_raw(0, 10_000) if r.stream_id == stream_id]
    previous = GENESIS
    for row in rows:
        data = row.data
        if row.stream_version == revision:
            data = canonical_json({**json.loads(row.data), "payee": "insider"})
        previous = chain(previous, row.content_digest(data))
        await execute(
            store,
            "UPDATE {s}.events SET data = $1, hash = $2 WHERE position = $3".replace(
                "$3", str(row.position)
            ),
            data,
            previous,
        )
    await execute(
        store, "UPDATE {s}.streams SET hash = $1 WHERE stream_id = $2", previous, stream_id
    )


def anchor_settings(tmp_path: Path) -> AnchorSettings:
    return AnchorSettings("funds", tmp_path / "anchor.key", tmp_path / "funds/anchors.jsonl", 60)


async def test_a_rewritten_and_rehashed_store_is_caught_by_the_last_anchor(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    store = await store_factory()
    await fill(store)
    settings = anchor_settings(tmp_path)
    first = await Anchorer(store, settings).anchor_once()
    assert first is not None
    assert first.tree_size == 12
    await rewrite_and_rehash(store, "account-a1", 2)

    assert (await store._read_stream("account-a1", 2, False, 1))[0].data["payee"] == ("insider")
    anchors = read_anchors(settings.anchors_file.read_text().splitlines())
    anchors[-1].check(load_or_create_key(settings.key_file).public_key())
    problems = await unextended(store, anchors)
    assert len(problems) == 1
    assert "the first 12 events hash to" in problems[0]
    with pytest.raises(AnchorError, match="no longer extends its anchor at tree size 12"):
        await Anchorer(store, settings).anchor_once()  # a restarted service signs no forgery


async def test_a_cut_off_tail_with_its_head_moved_back_is_caught(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    store = await store_factory()
    await fill(store)
    settings = anchor_settings(tmp_path)
    await Anchorer(store, settings).anchor_once()
    last = (await store.read_stream("account-a2", backwards=True, limit=1))[0]
    before = (await store.read_stream("account-a2", backwards=True, limit=2))[1]
    await execute(store, "DELETE FROM {s}.events WHERE event_id = $1", _id(store, last))
    await execute(
        store,
        "UPDATE {s}.streams SET version = 2, hash = $1 WHERE stream_id = $2",
        before.hash,
        "account-a2",
    )

    anchors = read_anchors(settings.anchors_file.read_text().splitlines())
    problems = await unextended(store, anchors)
    assert problems
    assert "covers 12 events, the store holds 11" in problems[0]


def _id(store: EventStore, event: object) -> object:
    event_id = event.event_id  # type: ignore[attr-defined]
    return str(event_id) if isinstance(store, SqliteEventStore | InMemoryEventStore) else event_id


async def test_anchoring_signs_only_when_the_store_grew_and_reads_only_new_rows(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    store = await store_factory()
    await fill(store, streams=1)
    anchorer = Anchorer(store, anchor_settings(tmp_path))
    first = await anchorer.anchor_once()
    unchanged = await anchorer.anchor_once()
    await store.append("account-b", [NewEvent("Paid", {"fen": 1})], StreamState.NO_STREAM)
    grown = await anchorer.anchor_once()

    assert first is not None
    assert unchanged is None
    assert grown is not None
    assert (first.tree_size, grown.tree_size) == (4, 5)
    assert grown.root == (await StoreTree().catch_up(store)).root.hex()
    assert len(anchor_settings(tmp_path).anchors_file.read_text().splitlines()) == 2
    assert (tmp_path / "anchor.key").stat().st_mode & 0o777 == 0o600
    assert await unextended(store, [first, grown]) == []


def test_the_anchor_settings_come_from_civitas_variables(tmp_path: Path) -> None:
    env = {"CIVITAS_FUNDS_ANCHOR_SECONDS": "5", "CIVITAS_ANCHOR_KEY_FILE": "/secrets/a.key"}
    settings = AnchorSettings.of("funds", tmp_path, env)
    assert settings.every == 5
    assert settings.key_file == Path("/secrets/a.key")
    assert settings.anchors_file == tmp_path / "funds" / "anchors.jsonl"
    with pytest.raises(ValueError, match="0 \\(off\\) or more"):
        AnchorSettings.of("funds", tmp_path, {"CIVITAS_ANCHOR_SECONDS": "-1"})


async def test_a_refusal_is_counted_for_operators_and_a_shrunk_store_is_refused_at_once(
    tmp_path: Path,
) -> None:
    store = SqliteEventStore(tmp_path / "funds.db")
    await fill(store)
    settings = AnchorSettings("funds", tmp_path / "anchor.key", tmp_path / "a.jsonl", 0.01)
    await Anchorer(store, settings).anchor_once()
    await execute(store, "DELETE FROM {s}.events WHERE stream_id = $1", "account-a2")
    labels = {"service": "funds", "reason": "not_extended"}

    def refused() -> float:
        return REGISTRY.get_sample_value("civitas_anchoring_refusals_total", labels) or 0

    before = refused()
    task = asyncio.create_task(Anchorer(store, settings).run())
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if refused() > before:
                break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()

    assert refused() > before
    assert len(settings.anchors_file.read_text().splitlines()) == 1  # nothing signed since
    seen = REGISTRY.get_sample_value(
        "civitas_anchor_last_success_timestamp_seconds", {"service": "funds"}
    )
    assert seen is not None
    publish_failed = {"service": "funds", "reason": "publish_failed"}
    assert REGISTRY.get_sample_value("civitas_anchoring_refusals_total", publish_failed) is not None
