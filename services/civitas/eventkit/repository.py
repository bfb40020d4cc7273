"""Load and save aggregates, with optimistic concurrency and snapshots."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from civitas.errors import NotFound

from . import requested, tracing
from .audit import SNAPSHOT_SUFFIX, snapshot_covers
from .domain import Aggregate, DomainEvent, EventRegistry, registry
from .errors import AggregateNotFound, ConcurrencyError, EventStoreError
from .ids import new_uuid
from .metrics import SNAPSHOTS_REJECTED
from .records import AppendResult, NewEvent, RecordedEvent, StreamState
from .store import EventStore

A = TypeVar("A", bound=Aggregate)
log = logging.getLogger(__name__)

SNAPSHOT_TYPE = "Snapshot"
RAN_BEFORE_WINDOW = 100
"""How many of a stream's latest events are searched for an earlier run's (a retry
comes seconds after it, so its events are among the stream's latest)."""


@dataclass(frozen=True, slots=True)
class Metadata:
    """Who caused the events being saved, and in answer to what. A correlation or
    causation id left out is taken from the work in hand (:mod:`.tracing`): the request
    being served, or the event a process manager reacts to."""

    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None


def is_snapshot(event: RecordedEvent) -> bool:
    """Whether an event is a repository's snapshot, not a fact of the domain (readers of
    the whole log, such as the relay, pass over them)."""
    return event.category.endswith(SNAPSHOT_SUFFIX)


class Repository(Generic[A]):
    """Loads aggregates of one class from their streams and saves their new events.

    ``save`` appends at the version the aggregate was loaded at, so a concurrent
    change raises :class:`ConcurrencyError` and stores nothing. With the class's
    ``snapshot_every`` set, a snapshot goes to ``<category>_snapshot-<id>`` each time
    the stream passes a multiple of it, and ``get`` starts from the latest one.

    A snapshot is bound to the events it summarizes: it records the revision and hash
    of the last event it covers (``covers``), and ``get`` reads that event with the
    rest. A snapshot whose hash the stream does not have, or one without a binding
    (from before bindings), is not trusted: the aggregate is rebuilt from its events,
    and a mismatch is logged as a warning and counted.
    """

    def __init__(
        self,
        store: EventStore,
        aggregate_class: type[A],
        *,
        events: EventRegistry = registry,
        use_snapshots: bool = True,
    ) -> None:
        self.store = store
        self.aggregate_class = aggregate_class
        self.events = events
        self.use_snapshots = use_snapshots and aggregate_class.snapshot_every is not None
        self._turns = KeyedLocks()

    async def get(self, aggregate_id: str) -> A:
        """The aggregate's current state; raises :class:`AggregateNotFound`.

        Run again for a request (:mod:`.requested`) whose earlier run appended to the
        stream, the state as that run found it: the events from the earlier run's on
        are left out, so the command's checks pass as they did then, and its append
        (of the same ids) returns the stored result."""
        start = await self._latest_snapshot(aggregate_id) if self.use_snapshots else None
        stream_id = self.aggregate_class.stream_id_of(aggregate_id)
        if start is not None:  # its last covered event too, to check the binding
            snapshot, covered_hash = start
            recorded = await self.store.read_stream(stream_id, from_version=snapshot.version)
            if recorded and recorded[0].hash.hex() == covered_hash:
                rest = _before_earlier_run(stream_id, recorded[1:])
                return self.aggregate_class.replay(aggregate_id, self._decode(rest), snapshot)
            self._distrust(stream_id, "mismatch", snapshot.version)
        recorded = await self.store.read_stream(stream_id)
        if not recorded:
            raise AggregateNotFound(stream_id)
        recorded = _before_earlier_run(stream_id, recorded) or recorded
        return self.aggregate_class.replay(aggregate_id, self._decode(recorded))

    def _distrust(self, stream_id: str, reason: str, version: int) -> None:
        SNAPSHOTS_REJECTED.labels(self.aggregate_class.category, reason).inc()
        if reason == "mismatch":
            log.warning(
                "the snapshot of %s at revision %d is not bound to the stored events "
                "(forged, or its stream changed): ignored, rebuilt from the events",
                stream_id,
                version,
            )

    async def find(self, aggregate_id: str) -> A | None:
        """The aggregate's current state, or None when it has no events."""
        try:
            return await self.get(aggregate_id)
        except AggregateNotFound:
            return None

    async def load(self, aggregate_id: str, kind: str, missing: type[Exception] = NotFound) -> A:
        """The aggregate an application was asked about; when it has no events, the
        refusal ``missing`` (:class:`NotFound` unless told), saying ``{kind} {id} does
        not exist``."""
        found = await self.find(aggregate_id)
        if found is None:
            raise missing(f"{kind} {aggregate_id} does not exist")
        return found

    async def create_or_fetch(self, aggregate: A, metadata: Metadata | None = None) -> A:
        """Save a new aggregate (its stream must not exist yet); when one was saved
        under its id first (a retried request, or a concurrent copy: a
        :class:`ConcurrencyError`), the stored one instead, for the caller to compare.
        The caller tells the two apart by identity: ``stored is aggregate`` when this
        one was saved."""
        try:
            await self.save(aggregate, metadata)
        except ConcurrencyError:
            return await self.get(aggregate.id)
        return aggregate

    async def get_as_of(
        self, aggregate_id: str, *, version: int | None = None, moment: datetime | None = None
    ) -> A:
        """The aggregate as it was at a version or at a moment (events up to it, inclusive)."""
        stream_id = self.aggregate_class.stream_id_of(aggregate_id)
        recorded = [
            event
            for event in await self.store.read_stream(stream_id)
            if (version is None or event.stream_version <= version)
            and (moment is None or event.occurred_at <= moment)
        ]
        if not recorded:
            raise AggregateNotFound(stream_id)
        return self.aggregate_class.replay(aggregate_id, self._decode(recorded))

    async def update(
        self,
        aggregate_id: str,
        change: Callable[[A], object],
        metadata: Metadata | None = None,
        *,
        loaded: A | None = None,
        kind: str | None = None,
        attempts: int = 10,
    ) -> A:
        """Load (or take the ``loaded`` aggregate, unchanged since it was read), apply
        ``change`` (a command method call; what it returns is ignored), save; on a
        version conflict wait, load again and retry, up to ``attempts`` times. The
        command's guards run again on the fresh state, so a retry never acts on stale
        data. With a ``kind``, a missing aggregate is refused as :meth:`load` refuses
        it; without, it raises :class:`AggregateNotFound`.

        The wait is jittered and doubles with each conflict (5 ms, 10 ms, … up to
        half a second, at most 1.6 s in all): a writer elsewhere that updates the
        aggregate back to back wins every race it starts at once, and only a growing
        wait outlasts its run.

        Updates of one aggregate through this repository take turns, so callers in
        this process never conflict with each other (many children attaching to one
        parent at once would otherwise run out of attempts); the retries are for
        other processes.

        Run for a request (:mod:`.requested`), each retry appends the ids the first
        try would have; a run whose events an earlier run of the request stored already
        returns the aggregate as stored, and a change refused now but found among the
        stream's latest events (the earlier run's) is answered as done."""
        async with self._turns.hold(aggregate_id):
            mark = requested.mark(self.aggregate_class.stream_id_of(aggregate_id))
            for attempt in range(1, attempts + 1):
                if attempt == 1 and loaded is not None:
                    aggregate = loaded
                elif kind is not None:
                    aggregate = await self.load(aggregate_id, kind)
                else:
                    aggregate = await self.get(aggregate_id)
                requested.rewind(aggregate.stream_id, mark)
                try:
                    change(aggregate)
                except Exception:  # refused; by the rules, or as a change made already
                    if await self._ran_before(aggregate):
                        return aggregate
                    raise
                try:
                    saved = await self.save(aggregate, metadata)
                except ConcurrencyError:
                    if attempt == attempts:
                        raise
                    await asyncio.sleep(random.uniform(0, min(0.5, 0.005 * 2 ** (attempt - 1))))
                    continue
                if requested.reran(aggregate.stream_id) or (
                    saved is not None and saved.stream_version != aggregate.version
                ):
                    return await self.get(aggregate_id)  # an earlier run's events, stored
                return aggregate
        raise AssertionError("unreachable")

    async def _ran_before(self, aggregate: A) -> bool:
        """Whether the request being served changed this aggregate already, in a run
        whose replica died before the request log kept it: a change its rules now
        refuse (a case filed twice) is then the first run's, and answered as done."""
        if requested.mark(aggregate.stream_id) is None:
            return False
        recent = await self.store.read_stream(
            aggregate.stream_id, backwards=True, limit=RAN_BEFORE_WINDOW
        )
        return requested.skip_stored(aggregate.stream_id, {e.event_id for e in recent})

    async def save(self, aggregate: A, metadata: Metadata | None = None) -> AppendResult | None:
        """Append the aggregate's pending events; returns None when there were none."""
        pending = aggregate.collect_pending()
        if not pending:
            return None
        meta = metadata or Metadata()
        loaded_at = aggregate.version - len(pending)
        expected = StreamState.NO_STREAM if loaded_at < 0 else loaded_at
        ids = requested.next_ids(aggregate.stream_id, len(pending)) or [new_uuid() for _ in pending]
        with tracing.appending(aggregate.stream_id, len(pending)) as trace_context:
            new_events = [
                NewEvent(
                    event_id=event_id,
                    type=event.event_type,
                    data=event.to_data(),
                    schema_version=event.schema_version,
                    actor=meta.actor,
                    correlation_id=meta.correlation_id or tracing.current_correlation_id(),
                    causation_id=meta.causation_id or tracing.current_causation_id(),
                    trace_context=trace_context,
                )
                for event, event_id in zip(pending, ids, strict=True)
            ]
            result = await self.store.append(aggregate.stream_id, new_events, expected)
        aggregate.mark_saved()
        await self._maybe_snapshot(aggregate, loaded_at)
        return result

    def _decode(self, recorded: list[RecordedEvent]) -> list[DomainEvent]:
        return [self.events.decode(e.type, e.schema_version, e.data) for e in recorded]

    def _snapshot_stream(self, aggregate_id: str) -> str:
        return f"{self.aggregate_class.category}{SNAPSHOT_SUFFIX}-{aggregate_id}"

    async def _latest_snapshot(self, aggregate_id: str) -> tuple[A, str] | None:
        """The latest snapshot of the current shape and the hash it says it covers."""
        found = await self.store.read_stream(
            self._snapshot_stream(aggregate_id), backwards=True, limit=1
        )
        if not found or found[0].data.get("snapshot_version") != (
            self.aggregate_class.snapshot_version
        ):
            return None  # none yet, or of an older shape: rebuild from the events
        covers = snapshot_covers(found[0].data)
        if covers is None or covers[0] != found[0].data.get("version"):
            stream_id = self.aggregate_class.stream_id_of(aggregate_id)
            reason = "unbound" if covers is None else "mismatch"
            self._distrust(stream_id, reason, found[0].data.get("version", -1))
            return None
        aggregate = self.aggregate_class(aggregate_id)
        aggregate.restore_state(found[0].data["state"])
        aggregate.version = covers[0]
        return aggregate, covers[1]

    async def _maybe_snapshot(self, aggregate: A, loaded_at: int) -> None:
        every = self.aggregate_class.snapshot_every
        if not self.use_snapshots or every is None:
            return
        if (aggregate.version + 1) // every == (loaded_at + 1) // every:
            return
        try:
            last = await self.store.read_stream(
                aggregate.stream_id, from_version=aggregate.version, limit=1
            )
            if not last or last[0].stream_version != aggregate.version:
                return  # moved on meanwhile: the next save snapshots
            snapshot = NewEvent(
                type=SNAPSHOT_TYPE,
                data={
                    "version": aggregate.version,
                    "covers": {"version": aggregate.version, "hash": last[0].hash.hex()},
                    "snapshot_version": self.aggregate_class.snapshot_version,
                    "state": aggregate.snapshot_state(),
                },
            )
            await self.store.append(
                self._snapshot_stream(aggregate.id), [snapshot], StreamState.ANY
            )
        except EventStoreError:  # a snapshot only saves time; the events are safe
            log.warning("snapshot of %s failed", aggregate.stream_id, exc_info=True)


def _before_earlier_run(stream_id: str, recorded: list[RecordedEvent]) -> list[RecordedEvent]:
    if not requested.active():  # no request: nothing to look for on a load's path
        return recorded
    at = requested.earlier_run(stream_id, [event.event_id for event in recorded])
    return recorded if at is None else recorded[:at]


class KeyedLocks:
    """One asyncio lock per key: commands on the same aggregate take turns in this
    process (a hot account would otherwise spend its time in version conflicts), while
    optimistic concurrency still guards against other processes."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, *keys: str) -> AsyncIterator[None]:
        """Hold the locks of ``keys`` (taken in sorted order, so two holders never
        deadlock)."""
        ordered = sorted(set(keys))
        async with contextlib.AsyncExitStack() as stack:
            for key in ordered:
                lock = self._locks.setdefault(key, asyncio.Lock())
                self._users[key] = self._users.get(key, 0) + 1
                stack.callback(self._done, key)
                await stack.enter_async_context(lock)
            yield

    def _done(self, key: str) -> None:
        self._users[key] -= 1
        if not self._users[key]:
            del self._users[key], self._locks[key]
