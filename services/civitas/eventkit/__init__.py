"""The Civitas event-sourcing kernel, shared by every service.

Event stores (SQLite, PostgreSQL) with KurrentDB's meaning, the hash chain,
aggregates with versioned events and upcasters, a repository with optimistic
concurrency and snapshots, and a projection runner with tracked positions.
"""

from .clock import Clock, ManualClock, SystemClock
from .errors import (
    AggregateNotFound,
    ConcurrencyError,
    EventIdConflict,
    EventStoreError,
    EventTooLarge,
    InvalidEvent,
    InvalidExpectedVersion,
    InvalidStreamName,
    StoreClosed,
    UnknownEventType,
)
from .hashing import GENESIS, canonical_json, chain, content_digest, first_broken_link
from .ids import natural_id
from .postgres import PostgresEventStore
from .records import (
    AppendResult,
    EventFilter,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamState,
    category_of,
    split_stream_id,
)
from .sqlite import SqliteEventStore
from .store import EventStore

__all__ = [
    "GENESIS",
    "AggregateNotFound",
    "AppendResult",
    "Clock",
    "ConcurrencyError",
    "EventFilter",
    "EventIdConflict",
    "EventStore",
    "EventStoreError",
    "EventTooLarge",
    "ExpectedVersion",
    "InvalidEvent",
    "InvalidExpectedVersion",
    "InvalidStreamName",
    "ManualClock",
    "NewEvent",
    "PostgresEventStore",
    "RecordedEvent",
    "SqliteEventStore",
    "StoreClosed",
    "StreamState",
    "SystemClock",
    "UnknownEventType",
    "canonical_json",
    "category_of",
    "chain",
    "content_digest",
    "first_broken_link",
    "natural_id",
    "split_stream_id",
]
