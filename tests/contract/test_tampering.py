"""Tampering with a store behind its back, as an insider with write access to the
database would: `verify` finds each change and names the first bad global position
and its stream (on every backend whose tables can be changed from outside)."""

from __future__ import annotations

import uuid

import pytest

from civitas.eventkit import EventStore, NewEvent, PostgresEventStore, StreamState
from civitas.eventkit.hashing import chain, content_digest
from tests.support.tampering import tamper


def new(n: int) -> NewEvent:
    return NewEvent(
        type="Happened", data={"n": n}, actor="clerk", correlation_id="c-1", causation_id="c-0"
    )


async def history(store: EventStore) -> dict[tuple[str, int], int]:
    """Four streams, interleaved; the position of each (stream, revision)."""
    await store.append("case-1", [new(1), new(2), new(3)], StreamState.NO_STREAM)
    await store.append("case-2", [new(1), new(2)], StreamState.NO_STREAM)
    await store.append("case-1", [new(4)], 2)
    await store.append("fund-7", [new(1)], StreamState.NO_STREAM)
    report = await store.verify()
    assert report.intact, report.broken
    assert (report.sealed, report.unsealed) == (7, 0)
    return {(e.stream_id, e.stream_version): e.position for e in await store.read_all()}


ONE_ROW = "WHERE stream_id = 'case-1' AND stream_version = 1"
HASH_OF = "(SELECT hash FROM {events} WHERE stream_id = '%s' AND stream_version = %d)"

ATTACKS: dict[str, tuple[str, tuple[str, int] | tuple[str, int, str]]] = {
    "a stream's head deleted, then an event's actor and data rewritten": (
        "DELETE FROM {streams} WHERE stream_id = 'case-2'; "
        "UPDATE {events} SET actor = 'mallory', data = '{{\"n\":9}}' "
        "WHERE stream_id = 'case-2' AND stream_version = 1",
        ("case-2", 0),
    ),
    "a stream's tail deleted and its head moved back": (
        "DELETE FROM {events} WHERE stream_id = 'case-1' AND stream_version = 3; "
        f"UPDATE {{streams}} SET version = 2, hash = {HASH_OF % ('case-1', 2)} "
        "WHERE stream_id = 'case-1'",
        ("case-1", 3),
    ),
    "a whole stream deleted together with its head": (
        "DELETE FROM {events} WHERE stream_id = 'case-2'; "
        "DELETE FROM {streams} WHERE stream_id = 'case-2'",
        ("case-2", 0),
    ),
    "a middle event deleted": (f"DELETE FROM {{events}} {ONE_ROW}", ("case-1", 1)),
    "a pair swapped (data and hash)": (
        "UPDATE {events} SET data = CASE stream_version WHEN 0 THEN '{{\"n\":2}}' "
        "ELSE '{{\"n\":1}}' END, hash = CASE stream_version "
        f"WHEN 0 THEN {HASH_OF % ('case-1', 1)} ELSE {HASH_OF % ('case-1', 0)} END "
        "WHERE stream_id = 'case-1' AND stream_version IN (0, 1)",
        ("case-1", 0),
    ),
    "two events of different streams swapped in the global order": (
        f"UPDATE {{events}} SET position = -position {ONE_ROW}; "
        "UPDATE {events} SET position = (SELECT -position FROM {events} WHERE position < 0) "
        "WHERE stream_id = 'case-2' AND stream_version = 0; "
        "UPDATE {events} SET position = "
        "(SELECT position FROM {ledger} WHERE stream_id = 'case-2' AND stream_version = 0) "
        "WHERE position < 0",
        ("case-1", 1, "case-2"),  # case-2's first event now sits there
    ),
    "the ledger's entry of a middle event deleted": (
        f"DELETE FROM {{ledger}} {ONE_ROW}",
        ("case-1", 1),
    ),
    "a head record moved forward": (
        "UPDATE {streams} SET version = version + 1 WHERE stream_id = 'case-1'",
        ("case-1", 3),
    ),
    "a head record moved back alone": (
        f"UPDATE {{streams}} SET version = 2, hash = {HASH_OF % ('case-1', 2)} "
        "WHERE stream_id = 'case-1'",
        ("case-1", 3),
    ),
    "a head record's hash changed": (
        f"UPDATE {{streams}} SET hash = {HASH_OF % ('case-2', 0)} WHERE stream_id = 'case-1'",
        ("case-1", 3),
    ),
    "a head record renamed": (
        "UPDATE {streams} SET stream_id = 'case-9' WHERE stream_id = 'case-1'",
        ("case-1", 0),
    ),
}

COLUMNS = {
    "events.event_id": "event_id = '00000000-0000-4000-8000-000000000001'",
    "events.stream_id": "stream_id = 'case-1x'",
    "events.category": "category = 'fund'",
    "events.stream_version": "stream_version = stream_version + 10",
    "events.type": "type = 'Happenes'",
    "events.schema_version": "schema_version = schema_version + 1",
    "events.actor": "actor = 'clerj'",
    "events.correlation_id": "correlation_id = 'c-2'",
    "events.causation_id": "causation_id = 'c-9'",
    "events.data": "data = '{{\"n\":3}}'",
    "events.hash": f"hash = {HASH_OF % ('case-2', 0)}",
    "events.position": "position = position + 1000",
    "ledger.stream_id": "stream_id = 'case-2'",
    "ledger.stream_version": "stream_version = 2",
    "ledger.position": "position = position + 1000",
    "ledger.link": "link = (SELECT link FROM {ledger} WHERE stream_id = 'fund-7')",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_verify_names_the_first_bad_position_after(store: EventStore, attack: str) -> None:
    positions = await history(store)
    sql, (stream, version, *found_in) = ATTACKS[attack]

    await tamper(store, sql)
    report = await store.verify(batch_size=2)

    assert report.first is not None, f"{attack}: not found"
    named = (report.first.position, report.first.stream_id)
    assert named == (positions[stream, version], (found_in or [stream])[0]), report.broken


@pytest.mark.parametrize("column", list(COLUMNS))
async def test_verify_finds_a_changed_value_in_any_column(store: EventStore, column: str) -> None:
    positions = await history(store)
    table, _, _ = column.partition(".")

    await tamper(store, f"UPDATE {{{table}}} SET {COLUMNS[column]} {ONE_ROW}")
    report = await store.verify(batch_size=2)

    assert report.first is not None, f"{column}: not found"
    assert report.first.position == positions["case-1", 1], report.broken
    assert report.first.stream_id in ("case-1", "case-1x")


@pytest.mark.parametrize("column", ["occurred_at"])
async def test_verify_finds_a_changed_timestamp(store: EventStore, column: str) -> None:
    positions = await history(store)
    later = (
        "occurred_at + interval '1 microsecond'"
        if isinstance(store, PostgresEventStore)
        else "'1999' || substr(occurred_at, 5)"
    )
    await tamper(store, f"UPDATE {{events}} SET {column} = {later} {ONE_ROW}")
    report = await store.verify()

    assert report.first is not None
    assert (report.first.position, report.first.stream_id) == (positions["case-1", 1], "case-1")


async def test_verify_finds_an_event_inserted_below_the_ledgers_last_position(
    store: EventStore,
) -> None:
    """A well-formed event (its stream chain and head recomputed) put into the global
    order: on PostgreSQL into a gap a failed append left; on SQLite, whose writer seals
    in the commit that stores events, anywhere."""
    await store.append("case-1", [new(1)], StreamState.NO_STREAM)
    with pytest.raises(Exception, match="version"):
        await store.append("case-1", [new(2)], StreamState.NO_STREAM)  # may leave a gap
    await store.append("case-2", [new(1)], StreamState.NO_STREAM)
    assert (await store.verify()).intact
    [first, _] = await store.read_all()
    gap = first.position + 1 if isinstance(store, PostgresEventStore) else 3
    occurred = first.occurred_at
    forged = chain(
        first.hash,
        content_digest(
            stream_id="case-1",
            event_id=uuid.UUID(int=7),
            type="Happened",
            schema_version=1,
            occurred_at=occurred,
            actor="mallory",
            correlation_id=None,
            causation_id=None,
            data_json='{"n":2}',
        ),
    )
    columns = "position, event_id, stream_id, category, stream_version, type, schema_version"
    values = (
        f"{gap}, '{uuid.UUID(int=7)}', 'case-1', 'case', 1, 'Happened', 1, "
        f"'{occurred.isoformat(timespec='microseconds')}', 'mallory', NULL, NULL, "
        f"'{{{{\"n\":2}}}}', {_blob(store, forged)}"
    )
    tx = ", tx_id" if isinstance(store, PostgresEventStore) else ""
    tx_value = ", (SELECT min(tx_id) FROM {events})" if tx else ""
    await tamper(
        store,
        f"INSERT INTO {{events}} ({columns}, occurred_at, actor, correlation_id, causation_id, "
        f"data, hash{tx}) VALUES ({values}{tx_value}); "
        f"UPDATE {{streams}} SET version = 1, hash = {_blob(store, forged)} "
        "WHERE stream_id = 'case-1'",
    )
    report = await store.verify()

    assert report.first is not None
    assert (report.first.position, report.first.stream_id) == (gap, "case-1")
    assert "not in the ledger" in report.first.reason


def _blob(store: EventStore, value: bytes) -> str:
    if isinstance(store, PostgresEventStore):
        return f"'\\x{value.hex()}'::bytea"
    return f"X'{value.hex()}'"


async def test_a_snapshot_bound_to_a_hash_its_event_does_not_have_is_found(
    store: EventStore,
) -> None:
    await store.append("case-1", [new(1), new(2)], StreamState.NO_STREAM)
    [_, last] = await store.read_stream("case-1")
    bound = {"version": 1, "hash": last.hash.hex()}
    await store.append(
        "case_snapshot-1", [NewEvent("Snapshot", {"covers": bound})], StreamState.ANY
    )
    assert (await store.verify()).intact
    forged = {"version": 1, "hash": "00" * 32}
    result = await store.append(
        "case_snapshot-1", [NewEvent("Snapshot", {"covers": forged})], StreamState.ANY
    )

    report = await store.verify()

    assert report.snapshots == 2
    assert report.first is not None
    assert (report.first.position, report.first.stream_id) == (result.position, "case_snapshot-1")
    assert "forged or stale" in report.first.reason
