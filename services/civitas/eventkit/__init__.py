"""The Civitas event-sourcing kernel, shared by every service.

Event stores (SQLite, PostgreSQL, and one in memory for tests) with KurrentDB's
meaning, the hash chain, aggregates with versioned events and upcasters, a repository
with optimistic concurrency and snapshots, and a projection runner with tracked positions.
"""

from .clock import Clock, ManualClock, SystemClock
from .config import create_read_model_engine, open_event_store, setting
from .domain import (
    UNSEALED,
    Aggregate,
    DomainEvent,
    EventRegistry,
    SealedName,
    applies,
    registry,
)
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
from .memory import InMemoryEventStore, MemoryDatabase
from .postgres import PostgresEventStore
from .projection import CatchUpFeed, Feed, Projection, ProjectionRunner, StoreFeed, handles
from .records import (
    AppendResult,
    EventFilter,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamState,
    split_stream_id,
    stream_parts,
)
from .repository import KeyedLocks, Metadata, Repository
from .sqlite import SqliteEventStore
from .store import EventStore

__all__ = [
    "GENESIS",
    "UNSEALED",
    "Aggregate",
    "AggregateNotFound",
    "AppendResult",
    "CatchUpFeed",
    "Clock",
    "ConcurrencyError",
    "DomainEvent",
    "EventFilter",
    "EventIdConflict",
    "EventRegistry",
    "EventStore",
    "EventStoreError",
    "EventTooLarge",
    "ExpectedVersion",
    "Feed",
    "InMemoryEventStore",
    "InvalidEvent",
    "InvalidExpectedVersion",
    "InvalidStreamName",
    "KeyedLocks",
    "ManualClock",
    "MemoryDatabase",
    "Metadata",
    "NewEvent",
    "PostgresEventStore",
    "Projection",
    "ProjectionRunner",
    "RecordedEvent",
    "Repository",
    "SealedName",
    "SqliteEventStore",
    "StoreClosed",
    "StoreFeed",
    "StreamState",
    "SystemClock",
    "UnknownEventType",
    "applies",
    "canonical_json",
    "chain",
    "content_digest",
    "create_read_model_engine",
    "first_broken_link",
    "handles",
    "natural_id",
    "open_event_store",
    "registry",
    "setting",
    "split_stream_id",
    "stream_parts",
]
