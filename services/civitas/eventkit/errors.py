"""Errors raised by the event store and the kernel.

Every error a caller can provoke with bad input or a lost race is a subclass of
:class:`EventStoreError`, so the service boundary can map the known ones to gRPC
status codes and let anything else surface as a bug.
"""

from __future__ import annotations


class EventStoreError(Exception):
    """Base class for every error the event store raises on purpose."""


class InvalidStreamName(EventStoreError, ValueError):
    """A stream id is not of the form ``category-id``."""


class InvalidExpectedVersion(EventStoreError, ValueError):
    """The expected version is neither a :class:`StreamState` nor a revision >= 0."""


class InvalidEvent(EventStoreError, ValueError):
    """An event is malformed: bad type name, data that is not JSON, a duplicate id."""


class EventTooLarge(InvalidEvent):
    """An event's serialized data is larger than the store accepts."""


class ConcurrencyError(EventStoreError):
    """The stream is not at the expected version; nothing was stored."""

    def __init__(self, stream_id: str, expected: object, actual: int | None) -> None:
        shown = "no stream" if actual is None else f"version {actual}"
        super().__init__(f"stream {stream_id!r} expected {expected}, but it is at {shown}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class EventIdConflict(ConcurrencyError):
    """Some of the event ids are stored already, but not as this same append."""

    def __init__(self, stream_id: str, detail: str) -> None:
        EventStoreError.__init__(self, f"stream {stream_id!r}: {detail}")
        self.stream_id = stream_id
        self.expected = None
        self.actual = None


class StoreClosed(EventStoreError):
    """The store was closed; no more reads or writes are accepted."""


class AggregateNotFound(EventStoreError, LookupError):
    """No events exist for the aggregate asked for."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"no events in stream {stream_id!r}")
        self.stream_id = stream_id


class UnknownEventType(EventStoreError, LookupError):
    """A stored event's type has no registered class to decode it."""
