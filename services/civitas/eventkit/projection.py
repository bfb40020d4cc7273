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
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Protocol, TypeVar

import sqlalchemy as sa

from .records import EventFilter, RecordedEvent
from .store import EventStore

log = logging.getLogger(__name__)

Handler = Callable[[Any, RecordedEvent, sa.Connection], None]
H = TypeVar("H", bound=Handler)
T = TypeVar("T")

positions_table = sa.Table(
    "projection_positions",
    sa.MetaData(),
    sa.Column("projection", sa.String(200), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)


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


class Feed(Protocol):
    """Where a consumer reads events from: a service's event store, or Kafka."""

    def follow(
        self, *, after: int, filter: EventFilter | None
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Batches after a position: catch up, then follow live events (never ends)."""
        ...

    async def read(self, *, after: int, filter: EventFilter | None) -> list[RecordedEvent]:
        """One batch after a position; empty when the consumer has caught up."""
        ...


class StoreFeed:
    """The embedded feed: a catch-up subscription on an event store."""

    def __init__(self, store: EventStore, batch_size: int = 500) -> None:
        self.store = store
        self.batch_size = batch_size

    def follow(
        self, *, after: int, filter: EventFilter | None
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Batches after a position: catch up, then follow live events (never ends)."""
        return self.store.subscribe(after=after, filter=filter, batch_size=self.batch_size)

    async def read(self, *, after: int, filter: EventFilter | None) -> list[RecordedEvent]:
        """One batch after a position; empty when the consumer has caught up."""
        return await self.store.read_all(after=after, limit=self.batch_size, filter=filter)


class ProjectionRunner:
    """Runs one projection from a feed into a read-model database.

    Each batch is applied in one transaction on a worker thread, together with the
    projection's new position.
    """

    def __init__(self, projection: Projection, feed: Feed, engine: sa.Engine) -> None:
        self.projection = projection
        self.feed = feed
        self.engine = engine

    async def setup(self) -> None:
        """Create the position table and the read model's tables."""
        await asyncio.to_thread(self._in_transaction, positions_table.metadata.create_all)
        await asyncio.to_thread(self._in_transaction, self.projection.create)

    async def position(self) -> int:
        """The position of the last event this projection has applied."""
        return await asyncio.to_thread(self._in_transaction, self._read_position)

    async def run(self) -> None:
        """Apply events as they come, until cancelled."""
        await self.setup()
        after = await self.position()
        async for batch in self.feed.follow(after=after, filter=self.projection.filter):
            await self._apply(batch)

    async def catch_up(self) -> int:
        """Apply every event available now; returns the position reached."""
        await self.setup()
        after = await self.position()
        while batch := await self.feed.read(after=after, filter=self.projection.filter):
            after = await self._apply(batch)
        return after

    async def rebuild(self) -> int:
        """Clear the read model and its position, then replay everything."""
        await self.setup()
        await asyncio.to_thread(self._in_transaction, self._clear)
        return await self.catch_up()

    async def _apply(self, batch: list[RecordedEvent]) -> int:
        await asyncio.to_thread(self._in_transaction, self._apply_batch, batch)
        return batch[-1].position

    def _in_transaction(self, work: Callable[..., T], *args: Any) -> T:
        with self.engine.begin() as conn:
            return work(conn, *args)

    def _apply_batch(self, conn: sa.Connection, batch: list[RecordedEvent]) -> None:
        for event in batch:
            self.projection.apply(event, conn)
        self._save_position(conn, batch[-1].position)

    def _read_position(self, conn: sa.Connection) -> int:
        value = conn.scalar(
            sa.select(positions_table.c.position).where(
                positions_table.c.projection == self.projection.name
            )
        )
        return int(value or 0)

    def _clear(self, conn: sa.Connection) -> None:
        self.projection.clear(conn)
        conn.execute(
            positions_table.delete().where(positions_table.c.projection == self.projection.name)
        )

    def _save_position(self, conn: sa.Connection, position: int) -> None:
        updated = conn.execute(
            positions_table.update()
            .where(positions_table.c.projection == self.projection.name)
            .values(position=position)
        )
        if updated.rowcount == 0:
            conn.execute(
                positions_table.insert().values(projection=self.projection.name, position=position)
            )
