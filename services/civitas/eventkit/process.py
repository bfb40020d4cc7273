"""Process managers: react to events by calling commands (here or in another service).

A process manager's effects live in other stores, so they cannot share a
transaction with its tracking. It is therefore at-least-once: each handler must be
idempotent (a derived id, a natural key, an "already so" guard), and the runner
records, after each batch, the last version it handled per stream, so that a
redelivered event is passed over and a restart goes on from where it stopped.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import sqlalchemy as sa

from .metrics import CONSUMER_FAILURES
from .projection import (
    Feed,
    TrackedRunner,
    applied_versions,
    observe_applied,
    save_tracking,
)
from .records import EventFilter, RecordedEvent

log = logging.getLogger(__name__)
Reaction = Callable[[Any, RecordedEvent], Awaitable[None]]


def reacts(*event_types: str) -> Callable[[Reaction], Reaction]:
    """Mark a process manager method as the reaction to these event types."""

    def mark(function: Reaction) -> Reaction:
        function.__reacts__ = event_types  # type: ignore[attr-defined]
        return function

    return mark


class ProcessManager(abc.ABC):
    """One async reaction per event type; other types are passed over."""

    name: ClassVar[str]
    _reactions: ClassVar[dict[str, Reaction]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._reactions = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                for event_type in getattr(attribute, "__reacts__", ()):
                    cls._reactions[event_type] = attribute

    @property
    def filter(self) -> EventFilter:
        return EventFilter.of(event_types=sorted(self._reactions))

    async def react(self, event: RecordedEvent) -> None:
        reaction = self._reactions.get(event.type)
        if reaction is not None:
            await reaction(self, event)


class ProcessManagerRunner(TrackedRunner):
    """Runs one process manager from a feed, tracking its progress in a database."""

    def __init__(
        self,
        manager: ProcessManager,
        feed: Feed,
        engine: sa.Engine,
        *,
        retryable: tuple[type[Exception], ...] = (),
        give_up_on: tuple[type[Exception], ...] = (),
        retry_delay: float = 1.0,
    ) -> None:
        super().__init__(manager.name, manager.filter, feed, engine)
        self.manager = manager
        self.retryable = retryable
        self.give_up_on = give_up_on
        self.retry_delay = retry_delay

    async def _handle(self, batch: list[RecordedEvent]) -> None:
        name = self.manager.name
        done = await asyncio.to_thread(
            self._in_transaction, applied_versions, name, {event.stream_id for event in batch}
        )
        handled: dict[str, int] = {}
        reacted = 0
        for event in batch:
            if event.stream_version <= done.get(event.stream_id, -1):
                continue
            await self._react(event)
            done[event.stream_id] = handled[event.stream_id] = event.stream_version
            reacted += 1
        position = max(event.position for event in batch)
        await asyncio.to_thread(self._in_transaction, save_tracking, name, handled, position)
        observe_applied(name, batch, reacted)

    async def _react(self, event: RecordedEvent) -> None:
        """React; wait and try again while a ``retryable`` error says "not now", and pass
        the event over (logged) when a ``give_up_on`` error says "never"."""
        while True:
            try:
                await self.manager.react(event)
                return
            except self.retryable as exc:
                CONSUMER_FAILURES.labels(self.manager.name, "retry").inc()
                log.warning("%s: %s; retrying in %ss", self.manager.name, exc, self.retry_delay)
                await asyncio.sleep(self.retry_delay)
            except self.give_up_on as exc:
                CONSUMER_FAILURES.labels(self.manager.name, "gave_up").inc()
                log.error(
                    "%s gave up on %s@%s (%s): %s",
                    self.manager.name,
                    event.stream_id,
                    event.stream_version,
                    event.type,
                    exc,
                )
                return
