"""The KurrentDB adapter's own logic, without a server (the contract suite runs it
against one when CIVITAS_TEST_KURRENTDB_URL is set)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

import pytest
from kurrentdbclient import RecordedEvent as KurrentRecorded
from kurrentdbclient.common import construct_filter_include_regex
from kurrentdbclient.exceptions import NotFoundError

from civitas.eventkit import EventFilter, NewEvent, StreamState
from civitas.eventkit.errors import ConcurrencyError, EventIdConflict
from civitas.eventkit.hashing import GENESIS, chain
from civitas.eventkit.kurrentdb import (
    KurrentDBEventStore,
    include_patterns,
    metadata_of,
    split_url,
)
from civitas.eventkit.store import PreparedEvent


def prepared(event_id: uuid.UUID) -> PreparedEvent:
    event = NewEvent("CaseFiled", {}, event_id=event_id, actor="clerk", correlation_id="c-1")
    return PreparedEvent(event, datetime(2026, 3, 1, tzinfo=UTC), "{}", b"\x01" * 32)


def recorded(event_id: uuid.UUID, position: int) -> KurrentRecorded:
    return KurrentRecorded(
        type="CaseFiled",
        data=b"{}",
        metadata=metadata_of(prepared(event_id), chain(GENESIS, b"\x01" * 32)),
        content_type="application/json",
        id=event_id,
        stream_name="cases.case-1",
        stream_position=position,
        commit_position=1000 + position,
        prepare_position=1000 + position,
        recorded_at=None,
        link=None,
        retry_count=None,
    )


def test_the_url_names_the_server_for_the_client_and_the_namespace_for_the_store() -> None:
    assert split_url("kurrentdb://127.0.0.1:2113?tls=false&namespace=cases") == (
        "kurrentdb://127.0.0.1:2113?tls=false",
        "cases",
    )
    assert split_url("esdb://db:2113?tls=false")[1] == "civitas"
    with pytest.raises(ValueError, match="namespace"):
        split_url("kurrentdb://db:2113?namespace=Bad-Name")


def test_server_side_filters_keep_to_the_namespace_and_its_categories() -> None:
    everything, _ = include_patterns("cases", None)
    by_category, then_types = include_patterns(
        "cases", EventFilter.of(categories=["case"], event_types=["CaseFiled"])
    )

    assert re.fullmatch(everything[0], "cases.case-1")
    assert not re.fullmatch(everything[0], "funds.account-x")
    assert re.fullmatch(by_category[0], "cases.case-1")
    assert not re.fullmatch(by_category[0], "cases.case_snapshot-1")
    assert then_types  # event types are checked here once categories went to the server


def test_a_retried_append_is_found_and_a_partial_overlap_is_refused() -> None:
    first, second, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    stored = [recorded(first, 0), recorded(second, 1)]
    retry = KurrentDBEventStore._already_appended(
        "case-1", [prepared(first), prepared(second)], stored
    )

    assert retry is not None
    assert (retry.stream_version, retry.position) == (1, 1001)
    assert KurrentDBEventStore._already_appended("case-1", [prepared(other)], stored) is None
    with pytest.raises(EventIdConflict):
        KurrentDBEventStore._already_appended("case-1", [prepared(second), prepared(other)], stored)


@pytest.mark.parametrize(
    ("expected", "current", "ok"),
    [
        (StreamState.ANY, None, True),
        (StreamState.NO_STREAM, None, True),
        (StreamState.NO_STREAM, 0, False),
        (StreamState.EXISTS, None, False),
        (StreamState.EXISTS, 3, True),
        (3, 3, True),
        (2, 3, False),
    ],
)
def test_the_expected_version_is_checked_as_kurrentdb_means_it(
    expected: object, current: int | None, ok: bool
) -> None:
    if ok:
        KurrentDBEventStore._check_expected("case-1", expected, current)  # type: ignore[arg-type]
    else:
        with pytest.raises(ConcurrencyError):
            KurrentDBEventStore._check_expected("case-1", expected, current)  # type: ignore[arg-type]


def test_metadata_carries_what_kurrentdb_has_no_field_for() -> None:
    meta = json.loads(metadata_of(prepared(uuid.uuid4()), b"\x02" * 32))

    assert meta == {
        "schema_version": 1,
        "occurred_at": "2026-03-01T00:00:00.000000+00:00",
        "actor": "clerk",
        "correlation_id": "c-1",
        "causation_id": None,
        "hash": "02" * 32,
    }


def test_a_recorded_event_reads_back_in_the_stores_own_terms() -> None:
    store = KurrentDBEventStore(None, "cases")  # type: ignore[arg-type]  # no server needed
    event_id = uuid.uuid4()
    event = store._decode(recorded(event_id, 0))

    assert (event.event_id, event.stream_id, event.stream_version) == (event_id, "case-1", 0)
    assert (event.position, event.actor, event.correlation_id) == (1000, "clerk", "c-1")
    assert event.hash == chain(GENESIS, b"\x01" * 32)
    assert event.occurred_at == datetime(2026, 3, 1, tzinfo=UTC)


class Reply:
    def __init__(self, items: list[KurrentRecorded]) -> None:
        self.items = items

    async def _each(self):  # type: ignore[no-untyped-def]
        for item in self.items:
            yield item

    def __aiter__(self):  # type: ignore[no-untyped-def]
        return self._each()


class InMemoryServer:
    """The client's transport faked in memory, with the client's own filter regex."""

    def __init__(self) -> None:
        self.log: list[KurrentRecorded] = []

    async def append_to_stream(self, name: str, *, events: object, current_version: object) -> int:
        batch = events if isinstance(events, list | tuple) else [events]
        for new in batch:
            revision = sum(1 for e in self.log if e.stream_name == name)
            position = 100 * (len(self.log) + 1)
            self.log.append(
                KurrentRecorded(
                    type=new.type,
                    data=new.data,
                    metadata=new.metadata,
                    content_type="application/json",
                    id=new.id,
                    stream_name=name,
                    stream_position=revision,
                    commit_position=position,
                    prepare_position=position,
                    recorded_at=None,
                    link=None,
                    retry_count=None,
                )
            )
        return 100 * len(self.log)

    async def read_stream(
        self,
        name: str,
        *,
        stream_position: int | None = None,
        backwards: bool = False,
        limit: int = 2**62,
    ) -> Reply:
        items = [e for e in self.log if e.stream_name == name]
        if not items:
            raise NotFoundError()
        return Reply((items[::-1] if backwards else items)[:limit])

    async def read_all(
        self,
        *,
        commit_position: int | None = None,
        filter_include: tuple[str, ...] = (),
        filter_by_stream_name: bool = False,
        limit: int = 2**62,
    ) -> Reply:
        pattern = re.compile(construct_filter_include_regex(filter_include))
        items = [
            e
            for e in self.log
            if pattern.match(e.stream_name)
            and (commit_position is None or (e.commit_position or 0) >= commit_position)
        ]
        return Reply(items[:limit])


async def test_a_type_filtered_read_pages_on_past_events_of_other_types() -> None:
    store = KurrentDBEventStore(InMemoryServer(), "funds")  # type: ignore[arg-type]
    for n in range(30):
        await store.append(f"account-{n}", [NewEvent("Debited", {"n": n})], StreamState.ANY)
    await store.append("expenditure-1", [NewEvent("ExpenditureApproved", {})], StreamState.ANY)

    found = await store.read_all(
        after=0, limit=10, filter=EventFilter.of(event_types=["ExpenditureApproved"])
    )

    assert [e.stream_id for e in found] == ["expenditure-1"]


async def test_checkpoints_are_kept_where_readers_of_events_do_not_look() -> None:
    store = KurrentDBEventStore(InMemoryServer(), "cases")  # type: ignore[arg-type]
    await store.append("case-1", [NewEvent("CaseFiled", {})], StreamState.NO_STREAM)
    await store.save_checkpoint("relay", 100)

    events = await store.read_all(after=0, limit=100)
    report = await store.verify()

    assert [e.stream_id for e in events] == ["case-1"]
    assert await store.load_checkpoint("relay") == 100
    assert (report.intact, report.events) == (True, 1)
