"""Projections: read models built from events, with their position tracked.

A :class:`Projection` has one handler per event type. A :class:`ProjectionRunner`
feeds it batches of events and, for each batch, writes the read-model changes and
the projection's position in one database transaction, so that a crash at any
moment leaves a read model that matches its position, and a restart goes on from
there. ``rebuild`` clears the read model and replays from position 0.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ClassVar, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .metrics import PROJECTION_DELAY, PROJECTION_EVENTS, PROJECTION_LAG
from .records import EventFilter, RecordedEvent
from .store import EventStore

log = logging.getLogger(__name__)

Handler = Callable[[Any, RecordedEvent, sa.Connection], None]
H = TypeVar("H", bound=Handler)
T = TypeVar("T")

tracking = sa.MetaData()
positions_table = sa.Table(
    "projection_positions",
    tracking,
    sa.Column("projection", sa.String(200), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)
streams_table = sa.Table(  # the last version applied per stream: what makes redelivery harmless
    "projection_streams",
    tracking,
    sa.Column("projection", sa.String(200), primary_key=True),
    sa.Column("stream_id", sa.String(255), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)


def tracked_position(conn: sa.Connection, name: str) -> int:
    """The position a projection or process manager has reached."""
    value = conn.scalar(
        sa.select(positions_table.c.position).where(positions_table.c.projection == name)
    )
    return int(value or 0)


def applied_versions(conn: sa.Connection, name: str, stream_ids: set[str]) -> dict[str, int]:
    """The last version applied per stream, for the streams asked about."""
    rows = conn.execute(
        sa.select(streams_table.c.stream_id, streams_table.c.version).where(
            streams_table.c.projection == name, streams_table.c.stream_id.in_(stream_ids)
        )
    )
    return {row.stream_id: row.version for row in rows}


def save_tracking(conn: sa.Connection, name: str, versions: dict[str, int], position: int) -> None:
    """Record the last versions applied and the position reached, in ``conn``'s transaction.

    The position only moves forward: from Kafka, partitions interleave, and a batch
    from one may end below the highest position applied from another."""
    if versions:
        rows = [{"projection": name, "stream_id": s, "version": v} for s, v in versions.items()]
        insert = _dialect_insert(conn)(streams_table)
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=["projection", "stream_id"],
                set_={"version": insert.excluded.version},
            ),
            rows,
        )
    updated = conn.execute(
        positions_table.update()
        .where(positions_table.c.projection == name)
        .values(position=sa.func.max(positions_table.c.position, position))
        if conn.dialect.name == "sqlite"
        else positions_table.update()
        .where(positions_table.c.projection == name)
        .values(position=sa.func.greatest(positions_table.c.position, position))
    )
    if updated.rowcount == 0:
        conn.execute(positions_table.insert().values(projection=name, position=position))


PROJECTION_LOCK_SPACE = 0x70726A  # "prj": the first key of projection locks


def hold_projection(conn: sa.Connection, name: str) -> None:
    """Take the projection's write lock for the rest of ``conn``'s transaction (call it
    first). Two runners of one projection (a service's, and a replay's swap) would
    otherwise both read a stream's last applied version before either wrote it, and
    both apply its next event. SQLite: ``BEGIN IMMEDIATE`` (the driver begins
    only at the first write); PostgreSQL: an advisory lock on the projection's name, in
    a key space of its own (two keys), at READ COMMITTED (the engine's default), where
    each statement after the lock sees what the previous holder committed."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.execute(
            sa.select(sa.func.pg_advisory_xact_lock(PROJECTION_LOCK_SPACE, sa.func.hashtext(name)))
        )


def insert_many(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows (dicts with the same keys) through the driver's ``executemany``.

    The same as ``conn.execute(table.insert(), rows)``, without SQLAlchemy's handling
    of each row's parameters, a third of a replay's time: values are converted only by
    the columns' types that convert anything (on SQLite, dates), once per value."""
    if not rows:
        return
    keys = list(rows[0])
    dialect = conn.dialect
    compiled = table.insert().compile(dialect=dialect, column_keys=keys)
    if compiled.escaped_bind_names or any(
        c.default is not None for c in table.c if c.key not in rows[0]
    ):  # parameters renamed, or defaults to fill in: SQLAlchemy's own way
        conn.execute(table.insert(), rows)
        return
    convert = {key: table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in keys}
    if compiled.positiontup is None:  # psycopg's "%(name)s": rows as they are, converted
        converting = {k: c for k, c in convert.items() if c is not None}
        if converting:
            rows = [{**r, **{k: c(r[k]) for k, c in converting.items()}} for r in rows]
        conn.exec_driver_sql(str(compiled), rows)
        return
    columns = [(key, convert[key]) for key in compiled.positiontup]  # SQLite's "?"
    values = [tuple([r[k] if c is None else c(r[k]) for k, c in columns]) for r in rows]
    conn.exec_driver_sql(str(compiled), values)


def _dialect_insert(conn: sa.Connection) -> Any:
    """``INSERT … ON CONFLICT`` exists in both SQLite and PostgreSQL, under each dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def handles(*event_types: str) -> Callable[[H], H]:
    """Mark a projection method as the handler of these event types."""

    def mark(function: H) -> H:
        function.__handles__ = event_types  # type: ignore[attr-defined]
        return function

    return mark


class Projection(abc.ABC):
    """A read model: its tables, and one handler per event type it cares about.

    Subclasses set ``name``, implement :meth:`create` and :meth:`clear`, and mark
    ``def on_x(self, event, conn)`` methods with :func:`handles`. Events of other
    types are passed over. Handlers are synchronous on purpose: a projection only
    writes its own database, and the runner runs a whole batch in one call on the
    connection's thread instead of one event-loop round trip per statement.
    """

    name: ClassVar[str]
    #: The read model's tables: what a replay compares with its shadow and swaps in.
    tables: ClassVar[tuple[sa.Table, ...]] = ()
    _handlers: ClassVar[dict[str, Handler]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                for event_type in getattr(attribute, "__handles__", ()):
                    cls._handlers[event_type] = attribute

    @property
    def filter(self) -> EventFilter:
        """Only the event types this projection handles are read."""
        return EventFilter.of(event_types=sorted(self._handlers))

    @abc.abstractmethod
    def create(self, conn: sa.Connection) -> None:
        """Create the read model's tables if they do not exist."""

    @abc.abstractmethod
    def clear(self, conn: sa.Connection) -> None:
        """Empty the read model (for a rebuild)."""

    def apply(self, event: RecordedEvent, conn: sa.Connection) -> None:
        """Run the handler for this event's type, if there is one."""
        handler = self._handlers.get(event.type)
        if handler is not None:
            handler(self, event, conn)

    def apply_all(self, events: list[RecordedEvent], conn: sa.Connection) -> None:
        """Apply a batch's new events in order (one transaction). Override to write a
        batch's rows together; the result must be as if each was applied alone."""
        for event in events:
            self.apply(event, conn)


def apply_tracked(conn: sa.Connection, projection: Projection, batch: list[RecordedEvent]) -> int:
    """Apply the events of ``batch`` the projection has not applied yet, and record its
    progress, in ``conn``'s transaction, which holds the projection's lock (see
    :func:`hold_projection`); returns how many were applied."""
    name = projection.name
    applied = applied_versions(conn, name, {event.stream_id for event in batch})
    changed: dict[str, int] = {}
    fresh = []
    for event in batch:
        if event.stream_version <= applied.get(event.stream_id, -1):
            continue  # delivered again (a relay restart, a Kafka redelivery)
        fresh.append(event)
        applied[event.stream_id] = changed[event.stream_id] = event.stream_version
    projection.apply_all(fresh, conn)
    save_tracking(conn, name, changed, max(event.position for event in batch))
    return len(fresh)


BatchHandler = Callable[[list[RecordedEvent]], Awaitable[None]]


class Feed(Protocol):
    """Where a consumer reads events from: a service's event store, or Kafka.

    A feed delivers batches in order per stream (Kafka keeps no order across
    partitions) and may deliver an event again after a restart; consumers skip
    what they have applied by stream version.
    """

    async def run(self, handle: BatchHandler, *, after: int, filter: EventFilter | None) -> None:
        """Call ``handle`` with each batch; a batch counts as consumed only once
        ``handle`` has returned. Runs until cancelled."""
        ...


class CatchUpFeed(Feed, Protocol):
    """A feed that can also say when there is nothing more to read right now."""

    async def read(
        self, *, after: int, filter: EventFilter | None, limit: int | None = None
    ) -> list[RecordedEvent]:
        """One batch (of at most ``limit`` events) after a position; empty when the
        consumer has caught up."""
        ...

    async def head(self) -> int:
        """The position of the newest event a reader may see now."""
        ...


class StoreFeed:
    """The embedded feed: a catch-up subscription on an event store."""

    def __init__(self, store: EventStore, batch_size: int = 500) -> None:
        self.store = store
        self.batch_size = batch_size

    async def run(self, handle: BatchHandler, *, after: int, filter: EventFilter | None) -> None:
        """Call ``handle`` with each batch after ``after``: catch up, then follow."""
        async for batch in self.store.subscribe(
            after=after, filter=filter, batch_size=self.batch_size
        ):
            await handle(batch)

    async def read(
        self, *, after: int, filter: EventFilter | None, limit: int | None = None
    ) -> list[RecordedEvent]:
        """One batch (of at most ``limit`` events) after a position; empty when the
        consumer has caught up."""
        return await self.store.read_all(after=after, limit=limit or self.batch_size, filter=filter)

    async def head(self) -> int:
        """The position of the newest event a reader may see now."""
        return await self.store.head_position()


def observe_applied(
    consumer: str, batch: list[RecordedEvent], applied: int, *, delays: bool = True
) -> None:
    """Metrics after a batch: events applied, each one's delay from its occurrence
    (unless ``delays`` is false), and the delay of the last one (the lag now)."""
    now = time.time()
    PROJECTION_EVENTS.labels(consumer).inc(applied)
    if delays:
        delay = PROJECTION_DELAY.labels(consumer)
        for event in batch:
            delay.observe(max(0.0, now - event.occurred_at.timestamp()))
    PROJECTION_LAG.labels(consumer).set(max(0.0, now - batch[-1].occurred_at.timestamp()))


@dataclasses.dataclass
class _Collecting:
    users: int = 0  # uses of collecting_less() open now
    normal: tuple[int, int, int] = (0, 0, 0)  # the thresholds before the first


_collecting = _Collecting()


@contextlib.contextmanager
def collecting_less() -> Iterator[None]:
    """Run the cyclic garbage collector less often while history is applied.

    A replay allocates millions of short-lived objects (events, rows) and makes no
    cycles worth collecting; with Python's default thresholds the collector's passes
    over the whole heap take about a tenth of a replay. Nested and concurrent uses
    restore the thresholds when the last one ends."""
    if not _collecting.users:
        _collecting.normal = normal = gc.get_threshold()
        if normal[0]:  # 0: automatic collection is off, and stays off
            gc.set_threshold(max(normal[0], 50_000), normal[1], normal[2])
    _collecting.users += 1
    try:
        yield
    finally:
        _collecting.users -= 1
        if not _collecting.users:
            gc.set_threshold(*_collecting.normal)


class TrackedRunner(abc.ABC):
    """What runners of projections and of process managers share: a feed, a database
    that tracks the consumer's position and last versions per stream, and the loops
    that hand it batches from where it stopped."""

    def __init__(self, name: str, filter: EventFilter, feed: Feed, engine: sa.Engine) -> None:
        self.name = name
        self.filter = filter
        self.feed = feed
        self.engine = engine

    async def setup(self) -> None:
        """Create the tracking tables."""
        await asyncio.to_thread(self._in_transaction, tracking.create_all)

    async def position(self) -> int:
        """The position of the last event this consumer has handled."""
        return await asyncio.to_thread(self._in_transaction, tracked_position, self.name)

    async def run(self) -> None:
        """Handle events as they come, until cancelled."""
        await self.setup()
        after = await self.position()
        await self.feed.run(self._handle, after=after, filter=self.filter)

    async def catch_up(self) -> int:
        """Handle every event available now; returns the position reached."""
        return await self._drain(self._handle)

    @abc.abstractmethod
    async def _handle(self, batch: list[RecordedEvent]) -> None:
        """Handle one batch and record the consumer's progress."""

    async def _drain(self, handle: BatchHandler) -> int:
        feed = self._catch_up_feed()
        await self.setup()
        after = await self.position()
        while batch := await feed.read(after=after, filter=self.filter):
            await handle(batch)
            after = batch[-1].position
        return after

    def _catch_up_feed(self) -> CatchUpFeed:
        if not hasattr(self.feed, "read"):
            raise TypeError(f"{type(self.feed).__name__} cannot tell when it has caught up")
        return self.feed  # type: ignore[return-value]

    def _in_transaction(self, work: Callable[..., T], *args: Any) -> T:
        with self.engine.begin() as conn:
            return work(conn, *args)


class ProjectionRunner(TrackedRunner):
    """Runs one projection from a feed into a read-model database.

    Each batch is applied in one transaction on a worker thread, together with the
    projection's new position.
    """

    def __init__(self, projection: Projection, feed: Feed, engine: sa.Engine) -> None:
        super().__init__(projection.name, projection.filter, feed, engine)
        self.projection = projection

    async def setup(self) -> None:
        """Create the tracking tables and the read model's tables."""
        await super().setup()
        await asyncio.to_thread(self._in_transaction, self.projection.create)

    async def wait_until_caught_up(self, within: float = 5.0, poll: float = 0.01) -> None:
        """Wait until this projection has applied every event stored when the call began
        (read-your-writes for queries served from the read model, without waiting for a
        quiet moment under steady writes); raises TimeoutError."""
        feed = self._catch_up_feed()
        target = await feed.head()
        async with asyncio.timeout(within):
            while True:  # the runner commits in its own transactions: poll its position
                after = await self.position()
                left = await feed.read(after=after, filter=self.filter, limit=1)
                if not left or left[0].position > target:
                    return
                await asyncio.sleep(poll)

    async def rebuild(self) -> int:
        """Clear the read model and its position, then replay everything.

        A rebuild applies history: it counts the events and sets the lag, but records
        no delay per event (days, for history, which would bury the live delays in the
        top bucket). The garbage collector runs less often meanwhile (see
        :func:`collecting_less`)."""
        await self.setup()
        await asyncio.to_thread(self._in_transaction, self._clear)
        with collecting_less():
            return await self._drain(functools.partial(self._handle, delays=False))

    async def _handle(self, batch: list[RecordedEvent], *, delays: bool = True) -> None:
        applied = await asyncio.to_thread(self._in_transaction, self._apply_batch, batch)
        observe_applied(self.name, batch, applied, delays=delays)

    def _apply_batch(self, conn: sa.Connection, batch: list[RecordedEvent]) -> int:
        hold_projection(conn, self.projection.name)
        return apply_tracked(conn, self.projection, batch)

    def _clear(self, conn: sa.Connection) -> None:
        hold_projection(conn, self.projection.name)
        self.projection.clear(conn)
        for table in (positions_table, streams_table):
            conn.execute(table.delete().where(table.c.projection == self.projection.name))
