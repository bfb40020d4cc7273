"""The event-store contract: every backend must pass every test here."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, timedelta

import pytest

from civitas.eventkit import (
    ConcurrencyError,
    EventFilter,
    EventIdConflict,
    EventStore,
    EventTooLarge,
    InvalidEvent,
    InvalidExpectedVersion,
    InvalidStreamName,
    ManualClock,
    NewEvent,
    StoreClosed,
    StreamState,
    first_broken_link,
)
from tests.support.tampering import tamper


def new(type_: str = "Happened", **data: object) -> NewEvent:
    return NewEvent(type=type_, data=dict(data) or {"n": 1})


async def all_events(store: EventStore) -> list:
    return await store.read_all(after=0, limit=100_000)


# -- append and expected versions ---------------------------------------------


async def test_first_append_to_a_new_stream_starts_at_revision_zero(store: EventStore) -> None:
    result = await store.append("case-1", [new(), new(), new()], StreamState.NO_STREAM)

    events = await store.read_stream("case-1")
    assert [e.stream_version for e in events] == [0, 1, 2]
    assert result.stream_version == 2
    assert result.position == events[-1].position
    assert [e.position for e in events] == sorted(e.position for e in events)


async def test_append_at_the_exact_version_extends_the_stream(store: EventStore) -> None:
    await store.append("case-1", [new(), new()], StreamState.NO_STREAM)

    result = await store.append("case-1", [new()], 1)

    assert result.stream_version == 2
    assert await store.stream_version("case-1") == 2


@pytest.mark.parametrize(
    ("expected", "actual"),
    [(StreamState.NO_STREAM, 1), (0, 1), (5, 1), (StreamState.EXISTS, None), (0, None)],
)
async def test_a_version_mismatch_raises_and_stores_nothing(
    store: EventStore, expected: object, actual: int | None
) -> None:
    if actual is not None:
        await store.append("case-1", [new(), new()], StreamState.NO_STREAM)
    before = await all_events(store)

    with pytest.raises(ConcurrencyError) as caught:
        await store.append("case-1", [new(), new()], expected)  # type: ignore[arg-type]

    assert caught.value.actual == actual
    assert await all_events(store) == before


async def test_any_and_exists_accept_a_stream_in_any_state(store: EventStore) -> None:
    await store.append("case-1", [new()], StreamState.ANY)
    await store.append("case-1", [new()], StreamState.EXISTS)
    await store.append("case-1", [new()], StreamState.ANY)

    assert await store.stream_version("case-1") == 2


async def test_racing_writers_at_the_same_version_let_exactly_one_win(store: EventStore) -> None:
    await store.append("fund-1", [new()], StreamState.NO_STREAM)

    outcomes = await asyncio.gather(
        *(store.append("fund-1", [new(writer=i)], 0) for i in range(10)), return_exceptions=True
    )

    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(isinstance(o, ConcurrencyError) for o in outcomes if isinstance(o, Exception))
    assert await store.stream_version("fund-1") == 1


async def test_racing_first_appends_with_any_all_succeed(store: EventStore) -> None:
    await asyncio.gather(*(store.append("fund-9", [new(i=i)], StreamState.ANY) for i in range(10)))

    assert [e.stream_version for e in await store.read_stream("fund-9")] == list(range(10))


async def test_an_empty_append_only_checks_the_version(store: EventStore) -> None:
    result = await store.append("case-1", [], StreamState.NO_STREAM)

    assert result.position is None
    assert await store.stream_version("case-1") is None
    with pytest.raises(ConcurrencyError):
        await store.append("case-1", [], StreamState.EXISTS)


# -- idempotency --------------------------------------------------------------


async def test_appending_the_same_event_ids_again_is_a_no_op(store: EventStore) -> None:
    batch = [new(), new()]
    first = await store.append("case-1", batch, StreamState.NO_STREAM)

    again = await store.append("case-1", batch, StreamState.NO_STREAM)

    assert again == first
    assert len(await all_events(store)) == 2


async def test_a_retry_after_later_appends_still_returns_the_first_result(
    store: EventStore,
) -> None:
    batch = [new()]
    first = await store.append("case-1", batch, StreamState.NO_STREAM)
    await store.append("case-1", [new()], 0)

    assert await store.append("case-1", batch, StreamState.NO_STREAM) == first
    assert len(await all_events(store)) == 2


@pytest.mark.parametrize("stream", ["case-1", "case-2"])
async def test_reusing_some_stored_event_ids_is_refused(store: EventStore, stream: str) -> None:
    stored = new()
    await store.append("case-1", [stored, new()], StreamState.NO_STREAM)
    before = await all_events(store)

    with pytest.raises(EventIdConflict):
        await store.append(stream, [stored, new()], StreamState.ANY)

    assert await all_events(store) == before


# -- reading ------------------------------------------------------------------


async def test_read_stream_forwards_and_backwards_from_a_version(store: EventStore) -> None:
    await store.append("case-1", [new(i=i) for i in range(6)], StreamState.NO_STREAM)
    await store.append("case-2", [new(i=99)], StreamState.NO_STREAM)

    forwards = await store.read_stream("case-1", from_version=2, limit=3)
    backwards = await store.read_stream("case-1", backwards=True, limit=2)
    back_from = await store.read_stream("case-1", from_version=3, backwards=True)

    assert [e.data["i"] for e in forwards] == [2, 3, 4]
    assert [e.stream_version for e in backwards] == [5, 4]
    assert [e.stream_version for e in back_from] == [3, 2, 1, 0]
    assert await store.read_stream("case-404") == []


async def test_read_all_returns_every_stream_in_global_order_after_a_position(
    store: EventStore,
) -> None:
    await store.append("case-1", [new(i=1)], StreamState.ANY)
    await store.append("fund-1", [new(i=2)], StreamState.ANY)
    await store.append("case-1", [new(i=3)], StreamState.ANY)
    everything = await all_events(store)

    after_first = await store.read_all(after=everything[0].position)

    assert [e.data["i"] for e in everything] == [1, 2, 3]
    assert [e.data["i"] for e in after_first] == [2, 3]
    assert await store.read_all(after=everything[0].position, limit=1) == [everything[1]]
    assert await store.head_position() == everything[-1].position


async def test_read_all_filters_by_category_and_by_event_type(store: EventStore) -> None:
    await store.append("case-1", [new("CaseRegistered"), new("CaseClassified")], StreamState.ANY)
    await store.append("fund-1", [new("FundOpened")], StreamState.ANY)
    await store.append("case_note-1", [new("CaseRegistered")], StreamState.ANY)

    by_category = await store.read_all(filter=EventFilter.of(categories=["case"]))
    by_type = await store.read_all(filter=EventFilter.of(event_types=["CaseRegistered"]))

    assert [e.stream_id for e in by_category] == ["case-1", "case-1"]
    assert [e.stream_id for e in by_type] == ["case-1", "case_note-1"]


async def test_a_stored_event_carries_every_field_and_a_chained_hash(
    store: EventStore, clock: ManualClock
) -> None:
    event_id = uuid.uuid4()
    await store.append(
        "case-7",
        [
            NewEvent(
                type="CaseRegistered",
                data={"title": "路灯不亮", "urgency": "normal"},
                event_id=event_id,
                schema_version=2,
                actor="user-1",
                correlation_id="corr-1",
                causation_id="cmd-1",
            )
        ],
        StreamState.NO_STREAM,
    )
    clock.advance(timedelta(minutes=5))
    await store.append("case-7", [new("CaseClassified")], 0)

    first, second = await store.read_stream("case-7")

    assert (first.event_id, first.stream_id, first.stream_version) == (event_id, "case-7", 0)
    assert (first.type, first.schema_version) == ("CaseRegistered", 2)
    assert (first.actor, first.correlation_id, first.causation_id) == ("user-1", "corr-1", "cmd-1")
    assert first.data == {"title": "路灯不亮", "urgency": "normal"}
    assert first.occurred_at == clock.now() - timedelta(minutes=5)
    assert first.occurred_at.utcoffset() == timedelta(0)
    assert second.occurred_at.tzinfo is not None
    assert second.occurred_at.astimezone(UTC) == clock.now()
    assert first.category == "case"
    assert len(first.hash) == 32
    assert first.hash != second.hash
    assert first_broken_link([first, second]) is None


async def test_the_hash_chain_exposes_a_changed_event(store: EventStore) -> None:
    await store.append("case-1", [new(i=1), new(i=2), new(i=3)], StreamState.NO_STREAM)
    events = await store.read_stream("case-1")

    tampered = [
        events[0],
        events[1].__class__(
            **{
                **{f: getattr(events[1], f) for f in events[1].__dataclass_fields__},
                "data": {"i": 20},
            }
        ),
        events[2],
    ]

    assert first_broken_link(tampered) is tampered[1]


async def test_verify_names_the_first_broken_link_after_one_stored_byte_changes(
    store: EventStore,
) -> None:
    await store.append("case-1", [new(i=1), new(i=2), new(i=3)], StreamState.NO_STREAM)
    await store.append("case-2", [new(i=7)], StreamState.NO_STREAM)
    intact = await store.verify()
    await tamper(
        store,
        "UPDATE {events} SET data = replace(data, '\"i\":2', '\"i\":3') "
        "WHERE stream_id = 'case-1' AND stream_version = 1",
    )
    tampered = await store.verify(batch_size=2)

    assert (intact.intact, intact.streams, intact.events) == (True, 2, 4)
    assert not tampered.intact
    assert [(b.stream_id, b.stream_version) for b in tampered.broken] == [("case-1", 1)]
    assert "does not follow from the stored content" in tampered.broken[0].reason


async def test_verify_of_a_busy_store_reports_no_false_breaks(store: EventStore) -> None:
    for n in range(20):
        await store.append(f"case-{n}", [new(i=0)], StreamState.NO_STREAM)

    async def keep_appending() -> None:
        for round_ in range(1, 40):
            await store.append(f"case-{round_ % 20}", [new(i=round_)], StreamState.ANY)
            await store.append(f"case-new{round_}", [new(i=round_)], StreamState.NO_STREAM)

    writing = asyncio.create_task(keep_appending())
    reports = []
    while not writing.done():
        reports.append(await store.verify(batch_size=3))
    await writing

    assert reports
    assert all(r.intact for r in reports), [r.broken for r in reports if not r.intact]


async def test_verify_finds_a_stream_whose_last_event_was_removed(store: EventStore) -> None:
    await store.append("case-1", [new(i=1), new(i=2)], StreamState.NO_STREAM)
    await tamper(store, "DELETE FROM {events} WHERE stream_id = 'case-1' AND stream_version = 1")
    report = await store.verify()

    assert [(b.stream_id, b.stream_version) for b in report.broken] == [("case-1", 1)]
    reason = report.broken[0].reason  # by the head, or by the ledger once sealed
    assert "head says revision 1" in reason or "the store has not" in reason


# -- subscriptions ------------------------------------------------------------


async def collect(store: EventStore, count: int, **options: object) -> list:
    seen: list = []
    async for batch in store.subscribe(**options):  # type: ignore[arg-type]
        seen.extend(batch)
        if len(seen) >= count:
            return seen
    raise AssertionError("subscription ended")


async def test_subscribe_catches_up_then_follows_live_appends(store: EventStore) -> None:
    await store.append("case-1", [new(i=1), new(i=2)], StreamState.ANY)
    follower = asyncio.create_task(collect(store, 4))
    await asyncio.sleep(0.2)

    await store.append("case-2", [new(i=3)], StreamState.ANY)
    await store.append("case-1", [new(i=4)], StreamState.ANY)

    seen = await asyncio.wait_for(follower, 10)
    assert [e.data["i"] for e in seen] == [1, 2, 3, 4]


async def test_subscribe_resumes_after_a_checkpoint_with_a_filter(store: EventStore) -> None:
    await store.append("case-1", [new("CaseRegistered", i=1)], StreamState.ANY)
    await store.append("fund-1", [new("FundOpened", i=2)], StreamState.ANY)
    await store.append("case-2", [new("CaseRegistered", i=3)], StreamState.ANY)
    checkpoint = (await all_events(store))[0].position

    seen = await asyncio.wait_for(
        collect(store, 1, after=checkpoint, filter=EventFilter.of(categories=["case"])), 10
    )

    assert [e.data["i"] for e in seen] == [3]


async def test_a_subscriber_sees_every_event_of_concurrent_writers_once_in_order(
    store_factory,
) -> None:
    writers, per_writer = 8, 2000
    store = await store_factory()
    follower = asyncio.create_task(collect(store, writers * per_writer, batch_size=500))

    async def write(w: int) -> None:
        for i in range(per_writer):
            await store.append(f"load-{w}", [new(w=w, i=i)], StreamState.ANY)

    await asyncio.wait_for(asyncio.gather(*(write(w) for w in range(writers))), 300)
    seen = await asyncio.wait_for(follower, 60)

    positions = [e.position for e in seen]
    assert positions == sorted(set(positions)), "not in global order, or seen twice"
    assert len({e.event_id for e in seen}) == writers * per_writer
    for w in range(writers):
        assert [e.data["i"] for e in seen if e.data["w"] == w] == list(range(per_writer))


# -- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "stream",
    [
        "",
        "case",
        "-1",
        "Case-1",
        "case-",
        "case 1",
        "case-1 2",
        "$all-1",
        "case-\n1",
        42,
        None,
        "x" * 10 + "-" + "y" * 300,
    ],
)
async def test_a_bad_stream_name_is_refused(store: EventStore, stream: object) -> None:
    with pytest.raises(InvalidStreamName, match="stream id"):
        await store.append(stream, [new()], StreamState.ANY)  # type: ignore[arg-type]
    assert await all_events(store) == []


@pytest.mark.parametrize("expected", [-1, -2, "1", None, 1.5, True, "any"])
async def test_a_bad_expected_version_is_refused(store: EventStore, expected: object) -> None:
    with pytest.raises(InvalidExpectedVersion, match="expected version"):
        await store.append("case-1", [new()], expected)  # type: ignore[arg-type]
    assert await all_events(store) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"when": object()}, "not JSON-serializable"),
        ({"tags": {1, 2}}, "not JSON-serializable"),
        ({"amount": float("nan")}, "not JSON-serializable"),
        ({1j: 1}, "not JSON-serializable"),
        (["a", "list"], "JSON object"),
        ("text", "JSON object"),
    ],
)
async def test_data_that_is_not_a_json_object_is_refused(
    store: EventStore, data: object, message: str
) -> None:
    await store.append("case-1", [new()], StreamState.NO_STREAM)

    with pytest.raises(InvalidEvent, match=message):
        await store.append("case-1", [new(), NewEvent("Bad", data)], 0)  # type: ignore[arg-type]

    assert len(await all_events(store)) == 1


async def test_an_event_over_the_size_limit_is_refused(store_factory) -> None:
    store = await store_factory(max_event_bytes=1000)

    with pytest.raises(EventTooLarge, match="over the limit of 1000"):
        await store.append("case-1", [new(), new(blob="x" * 1000)], StreamState.ANY)

    await store.append("case-1", [new(blob="x" * 900)], StreamState.ANY)
    assert len(await all_events(store)) == 1


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (NewEvent("has space", {}), "event type"),
        (NewEvent("", {}), "event type"),
        (NewEvent("Ok", {}, schema_version=0), "schema_version"),
        ("not an event", "NewEvent"),
    ],
)
async def test_a_malformed_event_is_refused(store: EventStore, event: object, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        await store.append("case-1", [event], StreamState.ANY)  # type: ignore[list-item]
    assert await all_events(store) == []


async def test_the_same_event_id_twice_in_one_append_is_refused(store: EventStore) -> None:
    twice = new()
    with pytest.raises(InvalidEvent, match="twice"):
        await store.append("case-1", [twice, twice], StreamState.ANY)
    assert await all_events(store) == []


async def test_a_closed_store_refuses_reads_and_writes(store_factory) -> None:
    store = await store_factory()
    await store.append("case-1", [new()], StreamState.ANY)
    await store.close()

    with pytest.raises(StoreClosed):
        await store.append("case-1", [new()], StreamState.ANY)
    with pytest.raises(StoreClosed):
        await store.read_stream("case-1")
    with pytest.raises(StoreClosed):
        await store.read_all()

    reopened = await store_factory()
    assert len(await all_events(reopened)) == 1


async def test_a_saved_checkpoint_survives_reopening_the_store(store_factory) -> None:
    store = await store_factory()
    assert await store.load_checkpoint("relay:cases") == 0

    await store.save_checkpoint("relay:cases", 41)
    await store.save_checkpoint("relay:cases", 42)
    await store.save_checkpoint("relay:funds", 7)
    await store.close()
    reopened = await store_factory()

    assert await reopened.load_checkpoint("relay:cases") == 42
    assert await reopened.load_checkpoint("relay:funds") == 7
    with pytest.raises(ValueError, match="checkpoint"):
        await reopened.save_checkpoint("relay:cases", -1)
    with pytest.raises(ValueError, match="checkpoint name"):
        await reopened.save_checkpoint("", 1)


async def test_a_store_keeps_the_identity_it_was_made_with_and_no_other_store_has_it(
    store_factory,
) -> None:
    store = await store_factory()
    identity = await store.identity()
    await store.append("case-1", [new()], StreamState.NO_STREAM)
    await store.close()

    reopened = await store_factory()
    another = await store_factory(apart=True)

    assert uuid.UUID(identity)
    assert await reopened.identity() == identity
    assert await another.identity() != identity
    with pytest.raises(StoreClosed):
        await store.identity()


async def test_a_retry_racing_its_first_attempt_gets_the_same_result(store: EventStore) -> None:
    batch = [new(), new()]

    first, retry = await asyncio.gather(
        store.append("case-1", batch, StreamState.NO_STREAM),
        store.append("case-1", batch, StreamState.NO_STREAM),
    )

    assert first == retry
    assert len(await all_events(store)) == 2
