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

from . import parking, readmodels, tracing
from .metrics import (
    CONSUMER_BEHIND_MESSAGES,
    CONSUMER_BEHIND_SECONDS,
    CONSUMER_FAILURES,
    EVENTS_PARKED,
    PARKED_EVENTS,
    PROJECTION_DELAY,
    PROJECTION_EVENTS,
    PROJECTION_LAG,
)
from .parking import CATEGORY_LENGTH, Parking, Undecodable
from .records import MAX_STREAM_ID_LENGTH, EventFilter, RecordedEvent
from .store import EventStore

log = logging.getLogger(__name__)

Handler = Callable[[Any, RecordedEvent, sa.Connection], None]
Check = Callable[[RecordedEvent], "str | None"]
"""Run on each event before it is handled; a text is the reason to park it (invalid)."""
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
    #: The shape of the read model: raise it when the tables or what handlers write in
    #: them change, and the read model is dropped and rebuilt from the feed once.
    version: ClassVar[int] = 1
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


def apply_tracked(
    conn: sa.Connection,
    projection: Projection,
    batch: list[RecordedEvent],
    *,
    complete: bool = False,
    check: Check | None = None,
) -> int:
    """Apply the events of ``batch`` the projection has not applied yet, park those it
    must not apply (see :class:`Gate`), and record its progress, in ``conn``'s
    transaction, which holds the projection's lock (see :func:`hold_projection`);
    returns how many were applied."""
    gate = Gate.load(
        conn, projection.name, batch, complete=complete, check=check, wanted=projection.filter
    )
    fresh = [event for event in batch if gate.admit(event)]
    projection.apply_all(fresh, conn)
    gate.save(conn)
    return len(fresh)


@dataclasses.dataclass
class Gate:
    """What a consumer knows of the streams in one batch, to sort each event: apply it,
    pass over it (delivered again, or a type it does not handle), or park it.

    Loaded with one query each (last versions, blocked streams, pinned origins), so a
    rebuild pays three queries per batch, none per event. Events are sorted in order:

    * **invalid**: its stream id is longer than the store allows (255 characters, a
      category of 64): no column of the consumer's would hold it;
    * **origin**: it comes from another store than its category's first events (a
      store that was reset writes the same stream ids at low versions again: checked
      before versions, so that its events are parked, never passed over as redelivered;
      each of them parks by itself, so none blocks the stream's own history);
    * **behind**: its stream has an open parked event at or below its version;
    * delivered again: its version is at or below the last handled one; unless its
      position is above every position handled (no redelivery can be), then
      **out_of_order**: an earlier event took its version (a forged one, applied from a
      feed that cannot see gaps);
    * **gap**: on a ``complete`` feed (every event of each stream reaches the consumer,
      its type filter applied here, after this check), a version beyond the next
      expected one. A feed that filters types itself (the store feed, in SQL) cannot
      tell a gap from a type passed over, and the store keeps versions contiguous;
    * **invalid**: the ``check`` gave a reason.

    Parking an event blocks its stream from that version on (an ``origin`` one
    excepted); earlier versions still flow, so a forged event far ahead holds back only
    what comes after it."""

    consumer: str
    applied: dict[str, int]
    blocked: dict[str, int]
    origins: dict[str, str]
    position: int
    complete: bool
    check: Check | None = None
    wanted: EventFilter | None = None  # on a complete feed, the consumer's own filter
    changed: dict[str, int] = dataclasses.field(default_factory=dict)
    pins: dict[str, str] = dataclasses.field(default_factory=dict)
    parked: list[tuple[RecordedEvent, Parking]] = dataclasses.field(default_factory=list)

    @classmethod
    def load(
        cls,
        conn: sa.Connection,
        consumer: str,
        batch: list[RecordedEvent],
        *,
        complete: bool,
        check: Check | None = None,
        wanted: EventFilter | None = None,
    ) -> Gate:
        """The consumer's knowledge of ``batch``'s streams, read in ``conn``."""
        origins = parking.pinned_origins(conn, consumer) if any(e.origin for e in batch) else {}
        return cls(
            consumer,
            applied_versions(conn, consumer, {event.stream_id for event in batch}),
            parking.blocked_streams(conn, consumer),
            origins,
            tracked_position(conn, consumer),
            complete,
            check,
            wanted,
        )

    def sort(self, event: RecordedEvent) -> bool | Parking:
        """True: apply it (then call :meth:`done`); False: pass over it; or why to park it."""
        last, position = self.applied.get(event.stream_id, -1), self.position
        self.position = max(position, event.position)
        version = event.stream_version
        if len(event.stream_id) > MAX_STREAM_ID_LENGTH or len(event.category) > CATEGORY_LENGTH:
            return Parking("invalid", f"stream id of {len(event.stream_id)} characters")
        origin, pinned = event.origin, self.origins.get(event.category)
        if origin is not None and pinned is not None and origin != pinned:
            return Parking("origin", f"from store {origin}, {event.category} is from {pinned}")
        if version >= self.blocked.get(event.stream_id, version + 1):
            return Parking("behind", f"{event.stream_id}@{self.blocked[event.stream_id]} is parked")
        if version <= last:
            if event.position <= position:
                return False  # delivered again
            return Parking("out_of_order", f"version {version} after version {last} was handled")
        if self.complete and version > last + 1:
            return Parking("gap", f"version {version}, expected {last + 1}")
        if self.complete and self.wanted is not None and not self.wanted.matches(event):
            self.done(event)  # seen: the next version of its stream is expected
            return False
        reason = self.check(event) if self.check is not None else None
        return Parking("invalid", reason) if reason else True

    def sort_parked(self, event: RecordedEvent) -> bool | Parking:
        """Sort a parked event an operator asked to retry, as :meth:`sort` does, as the
        head of its stream's parked sequence (its own parking does not block it). It
        was never handled, so a version its stream has handled already (another event
        took it) parks it again: a retry never counts it as delivered again."""
        self.blocked.pop(event.stream_id, None)
        last = self.applied.get(event.stream_id, -1)
        if event.stream_version <= last:
            return Parking(
                "out_of_order",
                f"version {event.stream_version} was handled already (the last handled is "
                f"{last}), by another event than this one: drop it, or rebuild",
            )
        return self.sort(event)

    def admit(self, event: RecordedEvent) -> bool:
        """Sort ``event``: park it here, or say whether to apply it (marked done)."""
        verdict = self.sort(event)
        if isinstance(verdict, Parking):
            self.park(event, verdict)
            return False
        if verdict:
            self.done(event)
        return verdict

    def done(self, event: RecordedEvent) -> None:
        """The event is handled: its stream's next version is expected, and the first
        origin handled of its category is pinned."""
        self.applied[event.stream_id] = self.changed[event.stream_id] = event.stream_version
        origin = event.origin
        if origin is not None and event.category not in self.origins:
            self.origins[event.category] = self.pins[event.category] = origin

    def park(self, event: RecordedEvent, why: Parking) -> None:
        """Park ``event``: its stream is blocked from its version on (unless it is of
        another store's history: see :attr:`Parking.blocks`)."""
        self.position = max(self.position, event.position)
        if why.blocks:
            blocked = self.blocked.get(event.stream_id, event.stream_version)
            self.blocked[event.stream_id] = min(blocked, event.stream_version)
        self.parked.append((event, why))

    def save(self, conn: sa.Connection) -> None:
        """Write the parked events, new origin pins, and the consumer's progress."""
        for event, why in self.parked:
            parking.park(conn, self.consumer, event, why)
            EVENTS_PARKED.labels(self.consumer, why.kind).inc()
            log.warning(
                "%s parked %s@%s (%s): %s",
                self.consumer,
                event.stream_id,
                event.stream_version,
                event.type,
                why.reason,
            )
        parking.pin_origins(conn, self.consumer, self.pins)
        self.pins = {}
        save_tracking(conn, self.consumer, self.changed, self.position)


BatchHandler = Callable[[list[RecordedEvent]], Awaitable[None]]


class Feed(Protocol):
    """Where a consumer reads events from: a service's event store, or Kafka.

    A feed delivers batches in order per stream (Kafka keeps no order across
    partitions) and may deliver an event again after a restart; consumers skip
    what they have applied by stream version.

    A feed may also offer (the runner asks with ``getattr``, so a wrapper without them
    still works): ``complete_streams`` (true when every event of each stream reaches the
    consumer, its type filter left to the runner, so that a gap in a stream's versions
    can be seen); ``behind(after=, filter=)``, how many messages and seconds a consumer
    at ``after`` is behind the head (the lag probe); and ``publish_parked(parked)``
    with ``run(..., undecodable=)``, for a feed that sets parked events and messages it
    cannot decode aside where others can see them (Kafka's dead-letter topic).
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
    """The embedded feed: a catch-up subscription on an event store.

    By default the consumer's type filter runs in SQL (a rebuild reads only what it
    handles), so a stream's versions legitimately skip and the consumer trusts the
    store to keep them contiguous. With ``complete_streams`` it reads every event of the
    filter's categories and the runner filters types after checking versions, so that
    a row written behind the store's back (a forged version far ahead) is parked, not
    applied: ``civitas replay`` reads so (a service's runners read their own store and
    their peers' type-filtered: see ``civitas.chassis.service.events_of`` for why)."""

    def __init__(
        self, store: EventStore, batch_size: int = 500, *, complete_streams: bool = False
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.complete_streams = complete_streams

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

    async def behind(self, *, after: int, filter: EventFilter | None) -> tuple[int, float]:
        """How far a consumer at position ``after`` is behind: the events stored after
        it (0 when none of them is for it) and the age of the first one it has not
        handled (0 when caught up)."""
        first = await self.read(after=after, filter=filter, limit=1)
        if not first:
            return 0, 0.0
        return await self.head() - after, max(0.0, time.time() - first[0].occurred_at.timestamp())


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


@dataclasses.dataclass(frozen=True, slots=True)
class Retrying:
    """How a consumer retries an event its handler fails on: ``attempts`` in all,
    waiting ``backoff`` seconds after the first failure, twice as long after each next
    one, at most ``cap``; then the event is parked."""

    attempts: int = 5
    backoff: float = 0.2
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row."""
        return min(self.cap, self.backoff * 2.0 ** (failures - 1))


RETRYING = Retrying()  # the defaults: settings give a service's own (ServiceSettings.retrying)
PROBE_EVERY = 5.0  # seconds between lag probes: a stalled consumer shows within one
RETRY_POLL = 3.0  # seconds between looks for retry requests (``civitas dlq retry``)


def _create_tables(conn: sa.Connection) -> None:
    readmodels.create_tables(conn, tracking, parking.parking, readmodels.versions)


class TrackedRunner(abc.ABC):
    """What runners of projections and of process managers share: a feed, a database
    that tracks the consumer's position, last versions per stream and parked events,
    and the loops that hand it batches from where it stopped.

    ``check`` runs on each event before it is handled; a text it returns is the reason
    to park the event as invalid (a schema validator is one). ``retrying`` says how
    often a failing handler is tried before its event is parked. While running, a probe
    sets the lag gauges every few seconds whatever batches do, and retry requests are
    looked for (see :meth:`retry_parked`)."""

    def __init__(
        self,
        name: str,
        filter: EventFilter,
        feed: Feed,
        engine: sa.Engine,
        *,
        check: Check | None = None,
        retrying: Retrying = RETRYING,
    ) -> None:
        self.name = name
        self.filter = filter
        self.feed = feed
        self.engine = engine
        self.check = check
        self.retrying = retrying
        self._serial = asyncio.Lock()  # batches and retries, one at a time

    @property
    def complete(self) -> bool:
        """Whether the feed delivers every event of each stream (gaps can be seen)."""
        return bool(getattr(self.feed, "complete_streams", False))

    @property
    def feed_filter(self) -> EventFilter:
        """What the feed is asked for: on a complete feed the categories alone, the
        type filter applied by the runner after the versions are checked."""
        if self.complete:
            return EventFilter.of(categories=self.filter.categories)
        return self.filter

    async def setup(self) -> None:
        """Create the tracking and parking tables."""
        await self._db(_create_tables)

    async def position(self) -> int:
        """The position of the last event this consumer has handled."""
        return await self._db(tracked_position, self.name)

    async def run(self) -> None:
        """Handle events as they come, until cancelled; meanwhile probe the lag and
        apply the parked sequences an operator asked to retry."""
        await self.setup()
        after = await self.position()
        options: dict[str, Any] = {}
        if hasattr(self.feed, "publish_parked"):
            options["undecodable"] = self._park_undecodable
        tasks = [
            asyncio.create_task(_every(PROBE_EVERY, self.observe_lag, self.name)),
            asyncio.create_task(_every(RETRY_POLL, self.retry_parked, self.name)),
        ]
        try:
            await self.feed.run(self._handle, after=after, filter=self.feed_filter, **options)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def catch_up(self) -> int:
        """Handle every event available now; returns the position reached."""
        return await self._drain(self._handle)

    async def observe_lag(self) -> tuple[int, float]:
        """Set the consumer's gauges: messages and seconds behind its feed's head (when
        the feed can tell), and events parked now; returns the first two."""
        parked = await self._db(parking.count_open, self.name)
        PARKED_EVENTS.labels(self.name).set(parked)
        behind = getattr(self.feed, "behind", None)
        if behind is None:
            return 0, 0.0
        messages, seconds = await behind(after=await self.position(), filter=self.feed_filter)
        CONSUMER_BEHIND_MESSAGES.labels(self.name).set(messages)
        CONSUMER_BEHIND_SECONDS.labels(self.name).set(seconds)
        return messages, seconds

    async def retry_parked(self) -> int:
        """Apply again, in each stream's order, the parked sequences an operator asked to
        retry (``civitas dlq retry``), unparking each event applied; returns how many.
        An event that fails again stays parked with one attempt more, and so do the
        events behind it; a dropped event is passed over."""
        async with self._serial:
            applied = 0
            for stream in await self._db(parking.retry_requested, self.name):
                applied += await self._retry_stream(stream)
        if applied:
            await self.observe_lag()
        return applied

    async def _retry_stream(self, stream: str) -> int:
        applied = 0
        rows = await self._db(parking.sequence, self.name, stream)
        for row in rows:
            event = row.event()
            if row.state == parking.PARKED:
                if row.blocks:
                    break  # not asked for: what follows waits behind it
            elif row.state == parking.DROPPING:
                counts = row.blocks and _alone(row, rows)
                await self._db(self._pass_over, row, event if counts else None)
            elif event is None:  # a message never decoded: its claimed stream waits not
                await self._db(parking.failed_again, row.id, "not an event: it can only be dropped")
            elif await self._retry_event(event, row.id) is not None:
                if row.blocks:  # what follows waits behind it
                    break
            else:
                applied += 1
        await self._db(parking.reopen, self.name, stream)
        return applied

    def _pass_over(
        self, conn: sa.Connection, row: parking.ParkedEvent, event: RecordedEvent | None
    ) -> None:
        """Pass a dropped row over, once. Its ``event`` (None for a message never decoded,
        an event of another store's history, or when another event waits parked at its
        version: a forged one dropped must not take the genuine one's place) counts as
        handled when it is its stream's next."""
        self._hold(conn)
        if event is not None:
            stream, version = event.stream_id, event.stream_version
            if version == applied_versions(conn, self.name, {stream}).get(stream, -1) + 1:
                save_tracking(conn, self.name, {stream: version}, event.position)
        parking.passed_over(conn, row.id)

    @abc.abstractmethod
    def _hold(self, conn: sa.Connection) -> None:
        """Take the consumer's lock, where it has one (a projection's)."""

    @abc.abstractmethod
    async def _handle(self, batch: list[RecordedEvent]) -> None:
        """Handle one batch and record the consumer's progress."""

    @abc.abstractmethod
    async def _retry_event(self, event: RecordedEvent, row: int) -> str | None:
        """Apply a parked event again and settle its row; the error, if it failed."""

    async def _attempts(
        self, work: Callable[[], Awaitable[T]], not_poison: tuple[type[Exception], ...] = ()
    ) -> T | Exception:
        """``work``'s result, tried up to the configured attempts with backoff; else the
        last error. An error in ``not_poison`` is raised at once."""
        error: Exception = RuntimeError("no attempt")
        for attempt in range(1, self.retrying.attempts + 1):
            try:
                return await work()
            except not_poison:
                raise
            except Exception as exc:
                error = exc
                CONSUMER_FAILURES.labels(self.name, "failed").inc()
                log.warning("%s failed (attempt %s): %r", self.name, attempt, exc)
                if attempt < self.retrying.attempts:
                    await asyncio.sleep(self.retrying.delay(attempt))
        return error

    def _failed(self, error: Exception) -> Parking:
        return Parking(
            "failed",
            f"the handler failed {self.retrying.attempts} times",
            f"{type(error).__name__}: {error}",
            self.retrying.attempts,
        )

    async def _park_undecodable(self, message: Undecodable) -> None:
        await self._db(parking.park_undecodable, self.name, message)
        EVENTS_PARKED.labels(self.name, "undecodable").inc()

    async def _announce(self, parked: list[tuple[RecordedEvent, Parking]]) -> None:
        """Set parked events aside where the feed shows them (Kafka's dead-letter topic)."""
        publish = getattr(self.feed, "publish_parked", None)
        if parked and publish is not None:
            await publish(parked)

    async def _drain(self, handle: BatchHandler) -> int:
        feed = self._catch_up_feed()
        await self.setup()
        after = await self.position()
        while batch := await feed.read(after=after, filter=self.feed_filter):
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

    async def _db(self, work: Callable[..., T], *args: Any) -> T:
        """``work(conn, *args)`` in a transaction of its own, on a worker thread."""
        return await asyncio.to_thread(self._in_transaction, work, *args)


def _alone(row: parking.ParkedEvent, rows: list[parking.ParkedEvent]) -> bool:
    """Whether no other row of the sequence waits parked at ``row``'s version."""
    return not any(
        r.stream_version == row.stream_version and r.state in parking.OPEN and r.blocks
        for r in rows
        if r is not row
    )


async def _every(seconds: float, work: Callable[[], Awaitable[Any]], consumer: str) -> None:
    """Run ``work`` every ``seconds`` until cancelled; a failure is logged, not fatal."""
    while True:
        try:
            await work()
        except Exception:
            log.exception("%s: %s failed; trying again", consumer, getattr(work, "__name__", work))
        await asyncio.sleep(seconds)


class ProjectionRunner(TrackedRunner):
    """Runs one projection from a feed into a read-model database.

    Each batch is applied in one transaction on a worker thread, together with the
    projection's new position. When a batch fails, its events are applied one at a
    time, each in a transaction of its own with the projection's lock, to find the one
    that fails: it is tried again with backoff and then parked, the events of its
    stream behind it are parked too, and the position moves on. A failure of the
    database itself (``OperationalError``: unreachable, locked) is not the events'
    fault: the batch comes again, and the lag shows the wait.
    """

    def __init__(
        self,
        projection: Projection,
        feed: Feed,
        engine: sa.Engine,
        *,
        check: Check | None = None,
        retrying: Retrying = RETRYING,
    ) -> None:
        super().__init__(
            projection.name, projection.filter, feed, engine, check=check, retrying=retrying
        )
        self.projection = projection

    async def setup(self) -> None:
        """Create the tracking tables and the read model's tables; a read model built by
        an older version of the projection is dropped and made anew, to be rebuilt from
        the feed (see :mod:`civitas.eventkit.readmodels`)."""
        await super().setup()
        found = await self._db(self._prepare)
        if found is not None and found < self.projection.version:
            log.warning(
                "%s: read model of version %s dropped; rebuilding it as version %s",
                self.name,
                found,
                self.projection.version,
            )

    def _prepare(self, conn: sa.Connection) -> int | None:
        """Make the read model at the projection's version, under its lock and the
        schema's (one process at a time); returns the version found before. The locks
        are taken in the order a replay's swap takes them (projection, then schema), so
        that the two cannot deadlock."""
        self._hold(conn)
        readmodels.hold_schema(conn)
        projection = self.projection
        found = readmodels.found_version(conn, self.name, projection.tables)
        if found is not None and found > projection.version:
            raise readmodels.ReadModelTooNew(self.name, found, projection.version)
        if found is not None and found < projection.version:
            readmodels.drop_tables(conn, projection.tables)
            self._forget_progress(conn)
        projection.create(conn)
        readmodels.record_version(conn, self.name, projection.version)
        return found

    async def wait_until_caught_up(self, within: float = 5.0, poll: float = 0.01) -> None:
        """Wait until this projection has applied every event stored when the call began
        (read-your-writes for queries served from the read model, without waiting for a
        quiet moment under steady writes); raises TimeoutError (UNAVAILABLE at the edge)
        after ``within`` seconds. It reads the position the projection tracked in the
        read-model database against the store's head, never this runner's own state, so
        a replica that does not run the projection (another holds its lease) waits for
        the one that does."""
        feed = self._catch_up_feed()
        target = await feed.head()
        try:
            async with asyncio.timeout(within):
                while True:  # the runner commits in its own transactions: poll its position
                    after = await self.position()
                    left = await feed.read(after=after, filter=self.feed_filter, limit=1)
                    if not left or left[0].position > target:
                        return
                    await asyncio.sleep(poll)
        except TimeoutError:
            raise TimeoutError(
                f"the read model {self.name} has not caught up with the events stored before "
                f"this query within {within:g} s: try again"
            ) from None

    async def rebuild(self) -> int:
        """Clear the read model, its position and its pinned origins, then replay
        everything (parked rows are kept: an event met again that is still parked keeps
        its stream blocked until it is retried or dropped).

        A rebuild applies history: it counts the events and sets the lag, but records
        no delay per event (days, for history, which would bury the live delays in the
        top bucket). The garbage collector runs less often meanwhile (see
        :func:`collecting_less`)."""
        await self.setup()
        await self._db(self._clear)
        with collecting_less():
            return await self._drain(functools.partial(self._handle, delays=False))

    @tracing.traced_batches
    async def _handle(self, batch: list[RecordedEvent], *, delays: bool = True) -> None:
        async with self._serial:
            try:
                applied, parked = await self._db(self._apply_batch, batch)
            except sa.exc.OperationalError:
                raise
            except Exception:
                log.exception("%s failed on a batch; applying it one event at a time", self.name)
                applied, parked = await self._one_by_one(batch)
        await self._announce(parked)
        observe_applied(self.name, batch, applied, delays=delays)

    async def _one_by_one(
        self, batch: list[RecordedEvent]
    ) -> tuple[int, list[tuple[RecordedEvent, Parking]]]:
        applied, parked = 0, []
        for event in batch:
            work = functools.partial(self._db, self._apply_batch, [event])
            result = await self._attempts(work, (sa.exc.OperationalError,))
            if isinstance(result, Exception):
                why = self._failed(result)
                await self._park_failed(event, why)
                parked.append((event, why))
            else:
                applied += result[0]
                parked += result[1]
        return applied, parked

    async def _park_failed(self, event: RecordedEvent, why: Parking) -> None:
        """Park an event that failed; if parking it fails too (it fits no column), that
        is the event's failure, not the database's: it is kept as a message that is not
        an event (its stream unblocked) and the position moves on, rather than failing
        its batch for ever."""
        try:
            await self._db(self._park, event, why)
        except sa.exc.OperationalError:
            raise
        except Exception as error:
            log.exception("%s could not park %s as an event", self.name, event.event_id)
            reason = f"could not be parked as an event: {type(error).__name__}: {error}"
            raw = parking.event_to_json(event)
            kept = Undecodable(str(event.event_id), event.stream_id, raw, reason)
            await self._db(self._keep, kept, event.position)
            EVENTS_PARKED.labels(self.name, "undecodable").inc()

    def _keep(self, conn: sa.Connection, message: Undecodable, position: int) -> None:
        self._hold(conn)
        parking.park_undecodable(conn, self.name, message)
        save_tracking(conn, self.name, {}, position)

    def _hold(self, conn: sa.Connection) -> None:
        hold_projection(conn, self.name)

    def _gate(self, conn: sa.Connection, batch: list[RecordedEvent]) -> Gate:
        self._hold(conn)
        return Gate.load(
            conn, self.name, batch, complete=self.complete, check=self.check, wanted=self.filter
        )

    def _apply_batch(
        self, conn: sa.Connection, batch: list[RecordedEvent]
    ) -> tuple[int, list[tuple[RecordedEvent, Parking]]]:
        gate = self._gate(conn, batch)
        fresh = [event for event in batch if gate.admit(event)]
        self.projection.apply_all(fresh, conn)
        gate.save(conn)
        return len(fresh), gate.parked

    def _park(self, conn: sa.Connection, event: RecordedEvent, why: Parking) -> None:
        gate = self._gate(conn, [event])
        gate.park(event, why)
        gate.save(conn)

    async def _retry_event(self, event: RecordedEvent, row: int) -> str | None:
        work = functools.partial(self._db, self._apply_parked, event, row)
        result = await self._attempts(work, (sa.exc.OperationalError,))
        if isinstance(result, Exception):
            error = self._failed(result).error
            await self._db(parking.failed_again, row, error)
            return error
        return result

    def _apply_parked(self, conn: sa.Connection, event: RecordedEvent, row: int) -> str | None:
        """Apply a retried row's event, unparked first in the same transaction (on
        PostgreSQL the row is locked until it commits), so that an operator's drop
        either comes before and stands, the event not applied, or finds it applied."""
        gate = self._gate(conn, [event])
        verdict = gate.sort_parked(event)
        if isinstance(verdict, Parking):
            parking.failed_again(conn, row, verdict.reason)
            return verdict.reason
        if not parking.unpark(conn, row):
            return "no longer to retry: dropped meanwhile"
        if verdict:
            self.projection.apply_all([event], conn)
            gate.done(event)
        gate.save(conn)
        return None

    def _clear(self, conn: sa.Connection) -> None:
        """Empty the read model, its tracking and its pinned origins (the replay pins
        them again from the first events it reads)."""
        hold_projection(conn, self.projection.name)
        self.projection.clear(conn)
        self._forget_progress(conn)

    def _forget_progress(self, conn: sa.Connection) -> None:
        """Reset the projection's tracking and pinned origins: it starts from zero."""
        for table in (positions_table, streams_table):
            conn.execute(table.delete().where(table.c.projection == self.name))
        parking.clear_origins(conn, self.name)
