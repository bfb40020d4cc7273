"""The values that go into and come out of an event store."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import ConcurrencyError, InvalidEvent, InvalidExpectedVersion, InvalidStreamName
from .ids import new_uuid


class StreamState(enum.Enum):
    """Expected states of a stream other than an exact revision (as in KurrentDB)."""

    ANY = "any"
    NO_STREAM = "no stream"
    EXISTS = "stream exists"

    def __str__(self) -> str:
        return self.value


ExpectedVersion = StreamState | int

_STREAM_RE = re.compile(
    r"^(?P<category>[a-z][a-z0-9_]{0,63})-(?P<id>[A-Za-z0-9][A-Za-z0-9_.:@-]*)$"
)
_TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]*$")
MAX_STREAM_ID_LENGTH = 255
MAX_EVENT_TYPE_LENGTH = 200
MAX_METADATA_LENGTH = 64
"""An actor, a correlation id or a causation id: the gRPC edge takes each as at most
64 characters (a token's subject, ``x-correlation-id``, ``x-causation-id``), so an
event whose metadata is longer did not come through it."""


def stream_parts(stream_id: str) -> tuple[str, str]:
    """``(category, aggregate id)`` of a stream id, the text either side of its first
    ``-`` (a category holds none), unchecked: for ids the store took, or rows read back
    as they are. An id from outside goes through :func:`split_stream_id`."""
    category, _, aggregate_id = stream_id.partition("-")
    return category, aggregate_id


def split_stream_id(stream_id: object) -> tuple[str, str]:
    """Return ``(category, id)`` of a stream id, or raise :class:`InvalidStreamName`."""
    if not isinstance(stream_id, str):
        raise InvalidStreamName(f"stream id must be a string, not {type(stream_id).__name__}")
    match = _STREAM_RE.fullmatch(stream_id)
    if match is None or len(stream_id) > MAX_STREAM_ID_LENGTH:
        raise InvalidStreamName(
            f"stream id {stream_id!r} is not 'category-id' (category: lower-case letters, digits "
            f"and '_'; id: letters, digits and '_.:@-'; at most {MAX_STREAM_ID_LENGTH} characters)"
        )
    return stream_parts(stream_id)


def check_expected_version(expected: object) -> ExpectedVersion:
    """Return ``expected`` if it is a valid expected version, else raise."""
    if isinstance(expected, StreamState):
        return expected
    if isinstance(expected, int) and not isinstance(expected, bool) and expected >= 0:
        return expected
    raise InvalidExpectedVersion(
        f"expected version must be StreamState.ANY, NO_STREAM, EXISTS or a revision >= 0, "
        f"not {expected!r}"
    )


def check_stream_state(stream_id: str, expected: ExpectedVersion, current: int | None) -> None:
    """Raise :class:`ConcurrencyError` unless ``current`` satisfies ``expected``."""
    if expected is StreamState.ANY:
        return
    if expected is StreamState.NO_STREAM:
        ok = current is None
    elif expected is StreamState.EXISTS:
        ok = current is not None
    else:
        ok = current == expected
    if not ok:
        raise ConcurrencyError(stream_id, expected, current)


def check_event_type(event_type: object) -> str:
    """Return ``event_type`` if it is a valid event type name, else raise."""
    if (
        not isinstance(event_type, str)
        or len(event_type) > MAX_EVENT_TYPE_LENGTH
        or not _TYPE_RE.fullmatch(event_type)
    ):
        raise InvalidEvent(
            f"event type {event_type!r} must start with a letter and hold only letters, digits "
            f"and '_.:-' (at most {MAX_EVENT_TYPE_LENGTH} characters)"
        )
    return event_type


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. ``occurred_at`` defaults to the store's clock."""

    type: str
    data: Mapping[str, Any]
    event_id: uuid.UUID = field(default_factory=new_uuid)
    schema_version: int = 1
    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    occurred_at: datetime | None = None
    trace_context: Mapping[str, str] | None = None
    """The W3C ``traceparent`` (and ``tracestate``) of the span that appends the event:
    operational metadata, stored beside the event but outside its hash."""


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: its place in its stream and in the global order, and its hash."""

    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    position: int
    type: str
    schema_version: int
    occurred_at: datetime
    actor: str | None
    correlation_id: str | None
    causation_id: str | None
    data: dict[str, Any]
    hash: bytes
    # The identity of the store the event came from, as a Kafka envelope states it;
    # None when read from a store directly (the reader knows which store that is).
    origin: str | None = None
    # The W3C trace context of the span that appended the event (not hashed), so a
    # consumer's span joins the trace of the command that caused it.
    trace_context: dict[str, str] | None = None

    @property
    def category(self) -> str:
        """The stream's category (``case`` for ``case-42``)."""
        return stream_parts(self.stream_id)[0]

    @property
    def aggregate_id(self) -> str:
        """The id of the aggregate whose stream this is (``42`` for ``case-42``)."""
        return stream_parts(self.stream_id)[1]


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append left the stream: its last revision and the last global position."""

    stream_version: int
    position: int | None


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Selects events by stream category or by event type (either list may be empty).

    An event passes when its category is in ``categories`` (or that list is empty)
    and its type is in ``event_types`` (or that list is empty).
    """

    categories: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()

    @classmethod
    def of(cls, categories: Iterable[str] = (), event_types: Iterable[str] = ()) -> EventFilter:
        """Build a filter from any iterables of names."""
        return cls(tuple(categories), tuple(event_types))

    def matches(self, event: RecordedEvent) -> bool:
        """True when the event passes this filter."""
        return (not self.categories or event.category in self.categories) and (
            not self.event_types or event.type in self.event_types
        )
