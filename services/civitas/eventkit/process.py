"""Process managers: react to events by calling commands (here or in another service).

A process manager's effects live in other stores, so they cannot share a
transaction with its tracking. It is therefore at-least-once: each handler must be
idempotent (a derived id, a natural key, an "already so" guard), and the runner
records, after each batch, the last version it handled per stream and the events it
parked, so that a redelivered event is passed over and a restart goes on from where
it stopped.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import sqlalchemy as sa

from . import parking, tracing
from .metrics import CONSUMER_FAILURES
from .parking import Parking
from .projection import RETRYING, Check, Feed, Gate, Retrying, TrackedRunner, observe_applied
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
    """Runs one process manager from a feed, tracking its progress in a database.

    Errors are of three kinds. A ``retryable`` one says "not now" (a peer unavailable):
    every stream would fail alike, so the runner waits and tries again, the wait
    doubling from ``retry_delay`` up to a minute, and the lag shows it. A ``give_up_on``
    one is a domain refusal: a decision, counted and logged, and the event counts as
    handled. Any other is poison: tried again with backoff (``retrying``), then the
    event is parked and its stream's later events behind it; other streams go on.
    """

    RETRYABLE_CAP = 60.0  # seconds: the longest wait for a peer that says "not now"

    def __init__(
        self,
        manager: ProcessManager,
        feed: Feed,
        engine: sa.Engine,
        *,
        retryable: tuple[type[Exception], ...] = (),
        give_up_on: tuple[type[Exception], ...] = (),
        retry_delay: float = 1.0,
        check: Check | None = None,
        retrying: Retrying = RETRYING,
    ) -> None:
        super().__init__(manager.name, manager.filter, feed, engine, check=check, retrying=retrying)
        self.manager = manager
        self.retryable = retryable
        self.give_up_on = give_up_on
        self.retry_delay = retry_delay

    @tracing.traced_batches
    async def _handle(self, batch: list[RecordedEvent]) -> None:
        async with self._serial:
            gate = await self._db(self._gate, batch)
            reacted = 0
            for event in batch:
                verdict = gate.sort(event)
                if isinstance(verdict, Parking):
                    gate.park(event, verdict)
                elif verdict:
                    failure = await self._react(event)
                    if failure is None:
                        gate.done(event)
                        reacted += 1
                    else:
                        gate.park(event, failure)
            await self._db(gate.save)
        await self._announce(gate.parked)
        observe_applied(self.name, batch, reacted)

    def _hold(self, conn: sa.Connection) -> None:
        """No lock: a process manager's effects are in other stores (see the module)."""

    def _gate(self, conn: sa.Connection, batch: list[RecordedEvent]) -> Gate:
        return Gate.load(
            conn, self.name, batch, complete=self.complete, check=self.check, wanted=self.filter
        )

    @tracing.traced_reactions
    async def _react(self, event: RecordedEvent) -> Parking | None:
        """React; None when done (or refused for good), else why to park the event."""
        result = await self._attempts(functools.partial(self._react_when_possible, event))
        return self._failed(result) if isinstance(result, Exception) else None

    async def _react_when_possible(self, event: RecordedEvent) -> None:
        """React, waiting while a ``retryable`` error says "not now"; a ``give_up_on``
        error is the answer (logged and counted)."""
        wait = self.retry_delay
        while True:
            try:
                await self.manager.react(event)
                return
            except self.retryable as exc:
                CONSUMER_FAILURES.labels(self.name, "retry").inc()
                log.warning("%s: %s; retrying in %ss", self.name, exc, wait)
                await asyncio.sleep(wait)
                wait = min(self.RETRYABLE_CAP, wait * 2)
            except self.give_up_on as exc:
                CONSUMER_FAILURES.labels(self.name, "gave_up").inc()
                log.error(
                    "%s gave up on %s@%s (%s): %s",
                    self.name,
                    event.stream_id,
                    event.stream_version,
                    event.type,
                    exc,
                )
                return

    async def _retry_event(self, event: RecordedEvent, row: int) -> str | None:
        gate = await self._db(self._gate, [event])
        verdict = gate.sort_parked(event)
        if verdict is True and not await self._db(parking.to_retry, row):
            return "no longer to retry: dropped meanwhile"
        failure = verdict if isinstance(verdict, Parking) else None
        if verdict is True:
            failure = await self._react(event)
        if failure is not None:
            error = failure.error or failure.reason
            await self._db(parking.failed_again, row, error)
            return error
        if verdict is True:
            gate.done(event)
        if not await self._db(self._settled, gate, row):
            return "dropped during its retry: the drop stands (its reaction was made)"
        return None

    @staticmethod
    def _settled(conn: sa.Connection, gate: Gate, row: int) -> bool:
        """Record the retried event as handled and unpark its row; False when an
        operator dropped the row meanwhile (the drop stands, the row is not unparked)."""
        gate.save(conn)
        return parking.unpark(conn, row)
