"""The request a command is run for, so that running it again stores nothing new.

A command carrying a request id may run twice: its replica can die after the events
are stored but before the request log keeps the id, and the client's retry then runs it
on another replica. While the request log runs such a command it names the request
here (:func:`serving`); the repository then gives the n-th event the command appends to
a stream the id :func:`event_id` derives from the request, the stream and n, instead
of a random one. The second run appends the same ids, and the store answers an append
whose ids it holds already with the stored result: the events are stored once.

Only the task that runs the command draws these ids: a task it starts (which inherits
the context) draws random ones, as process managers and commands without a request id
always do.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from .ids import natural_id


@dataclass
class _Request:
    request_id: str
    task: asyncio.Task[object] | None
    appended: dict[str, int] = field(default_factory=dict)  # stream -> events given ids
    rerun: set[str] = field(default_factory=set)  # streams an earlier run appended to


_current: ContextVar[_Request | None] = ContextVar("civitas_request", default=None)


def event_id(request_id: str, stream_id: str, n: int) -> uuid.UUID:
    """The id of the n-th event (from 0) a request's command appends to a stream."""
    return natural_id("request-event", request_id, stream_id, n)


@contextlib.contextmanager
def serving(request_id: str) -> Iterator[None]:
    """Name the request whose command runs in this task until the block ends."""
    token = _current.set(_Request(request_id, _task()))
    try:
        yield
    finally:
        _current.reset(token)


def _mine() -> _Request | None:
    request = _current.get()
    return request if request is not None and request.task is _task() else None


def _task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop
        return None


def mark(stream_id: str) -> int | None:
    """How many events the command has given ids on a stream (None outside a request):
    a repository re-running a change after a version conflict :func:`rewinds <rewind>`
    to it, so that the run appends the ids the first would have."""
    request = _mine()
    return None if request is None else request.appended.get(stream_id, 0)


def rewind(stream_id: str, to: int | None) -> None:
    """Give the stream's next events the ids from ``to`` on again (see :func:`mark`)."""
    request = _mine()
    if request is not None and to is not None:
        request.appended[stream_id] = to


def next_ids(stream_id: str, count: int) -> list[uuid.UUID] | None:
    """The ids of the next ``count`` events appended to a stream, or None outside a
    request (random ids then)."""
    request = _mine()
    if request is None:
        return None
    start = request.appended.get(stream_id, 0)
    request.appended[stream_id] = start + count
    return [event_id(request.request_id, stream_id, n) for n in range(start, start + count)]


def skip_stored(stream_id: str, stored: set[uuid.UUID]) -> bool:
    """Whether the stream's next event ids are among ``stored`` (the command ran on it
    already, in an earlier run of the request); if so they count as given."""
    request = _mine()
    if request is None:
        return False
    start = n = request.appended.get(stream_id, 0)
    while event_id(request.request_id, stream_id, n) in stored:
        n += 1
    request.appended[stream_id] = n
    return n > start


def active() -> bool:
    """Whether this task is running a command for a request."""
    return _mine() is not None


def earlier_run(stream_id: str, stored: list[uuid.UUID]) -> int | None:
    """Where, among a stream's events in order, an earlier run of the request being
    served appended the events this run is to append next (None if none did)."""
    request = _mine()
    if request is None:
        return None
    next_id = event_id(request.request_id, stream_id, request.appended.get(stream_id, 0))
    if next_id not in stored:
        return None
    request.rerun.add(stream_id)
    return stored.index(next_id)


def reran(stream_id: str) -> bool:
    """Whether an earlier run of the request being served appended to the stream."""
    request = _mine()
    return request is not None and stream_id in request.rerun
