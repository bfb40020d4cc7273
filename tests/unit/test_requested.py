"""Event ids derived from the request a command runs for (civitas.eventkit.requested)."""

from __future__ import annotations

import asyncio
import uuid

from civitas.eventkit import requested

REQUEST, OTHER = "0b6f3c1e-8f0a-4d8e-9c57-2a4c1d6e0b39", "7d1e2f3a-1111-4222-8333-944455566677"


def test_an_events_id_follows_its_request_stream_and_place_only() -> None:
    same = requested.event_id(REQUEST, "case-1", 0)
    assert same == requested.event_id(REQUEST, "case-1", 0)
    assert same != requested.event_id(OTHER, "case-1", 0)
    assert same != requested.event_id(REQUEST, "case-2", 0)
    assert same != requested.event_id(REQUEST, "case-1", 1)


async def test_a_commands_events_count_per_stream_and_a_rewind_gives_the_same_ids() -> None:
    with requested.serving(REQUEST):
        first = requested.next_ids("case-1", 2)
        other_stream = requested.next_ids("case-2", 1)
        mark = requested.mark("case-1")
        third = requested.next_ids("case-1", 1)
        requested.rewind("case-1", mark)
        again = requested.next_ids("case-1", 1)
    assert first == [requested.event_id(REQUEST, "case-1", n) for n in (0, 1)]
    assert other_stream == [requested.event_id(REQUEST, "case-2", 0)]
    assert third == again == [requested.event_id(REQUEST, "case-1", 2)]


async def test_outside_a_request_and_in_tasks_a_command_starts_ids_are_random() -> None:
    assert requested.next_ids("case-1", 1) is None
    assert requested.mark("case-1") is None
    with requested.serving(REQUEST):
        started = await asyncio.create_task(_ids_in_a_task())
    assert started is None


async def _ids_in_a_task() -> list[uuid.UUID] | None:
    return requested.next_ids("case-1", 1)


async def test_stored_ids_of_an_earlier_run_count_as_given() -> None:
    with requested.serving(REQUEST):
        stored = {requested.event_id(REQUEST, "case-1", 0)}
        assert requested.skip_stored("case-1", stored)
        assert requested.mark("case-1") == 1
        assert not requested.skip_stored("case-1", stored)


async def test_an_earlier_runs_events_are_found_where_they_are_and_marked() -> None:
    with requested.serving(REQUEST):
        stored = [uuid.uuid4(), requested.event_id(REQUEST, "case-1", 0), uuid.uuid4()]
        assert requested.earlier_run("case-2", stored) is None
        assert not requested.reran("case-1")
        assert requested.earlier_run("case-1", stored) == 1
        assert requested.reran("case-1")
    assert requested.earlier_run("case-1", stored) is None  # outside the request
