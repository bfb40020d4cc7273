"""The event store port: one interface with KurrentDB's meaning, several backends."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import orjson

from .audit import ChainReport, ChainVerifier, LedgerEntry, Progress, RawEvent, side_by_side
from .clock import Clock, SystemClock
from .errors import EventIdConflict, EventTooLarge, InvalidEvent, StoreClosed
from .hashing import canonical_json, content_digest, utc_iso
from .metrics import APPEND_SECONDS, EVENTS_APPENDED
from .records import (
    AppendResult,
    EventFilter,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    check_event_type,
    check_expected_version,
    split_stream_id,
)

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """A validated :class:`NewEvent` with its canonical data and content digest."""

    event: NewEvent
    occurred_at: datetime
    data_json: str
    digest: bytes

    def content_columns(self) -> tuple[str, int, str, str | None, str | None, str | None, str]:
        """What a row keeps of the event's content, in the stores' column order: type,
        schema version, occurred at (UTC ISO), actor, correlation id, causation id, data."""
        event = self.event
        return (
            event.type,
            event.schema_version,
            utc_iso(self.occurred_at),
            event.actor,
            event.correlation_id,
            event.causation_id,
            self.data_json,
        )

    def trace_column(self) -> str | None:
        """The event's trace context as the stores keep it (JSON text; not hashed)."""
        context = self.event.trace_context
        return orjson.dumps(dict(context)).decode() if context else None


def stored_trace_context(text: str | None) -> dict[str, str] | None:
    """A stored trace context column read back (None for events stored without one)."""
    return orjson.loads(text) if text else None


class EventStore(abc.ABC):
    """An append-only store of streams of events.

    - ``append`` checks the expected version (``StreamState`` or an exact revision,
      revisions counting from 0); a mismatch raises :class:`ConcurrencyError` and
      stores nothing. Appending the same event ids again returns the first result.
    - ``read_stream`` reads one stream forwards or backwards from a revision.
    - ``read_all`` reads every event in global order after a position.
    - ``subscribe`` catches up from a checkpoint, then follows new events.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        poll_interval: float = 0.05,
        global_chain: bool = True,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        # False only for the benchmark's baseline (today's append path, no ledger).
        self.global_chain = global_chain
        self.max_event_bytes = max_event_bytes
        self.poll_interval = poll_interval
        self._closed = False
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    # -- public interface -------------------------------------------------

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult:
        """Append ``events`` to ``stream_id`` atomically if it is at ``expected_version``."""
        self._check_open()
        category, _ = split_stream_id(stream_id)
        expected = check_expected_version(expected_version)
        prepared = self._prepare(stream_id, events)
        with APPEND_SECONDS.time():
            result = await self._append(stream_id, category, expected, prepared)
        EVENTS_APPENDED.labels(category).inc(len(prepared))
        self._wake_subscribers()
        return result

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of one stream from ``from_version`` (inclusive), forwards or backwards.

        ``from_version=None`` means the start (forwards) or the end (backwards).
        A stream that does not exist reads as empty.
        """
        self._check_open()
        split_stream_id(stream_id)
        if from_version is not None and (not isinstance(from_version, int) or from_version < 0):
            raise ValueError(f"from_version must be a revision >= 0, not {from_version!r}")
        _check_limit(limit)
        start = from_version if from_version is not None else (2**62 if backwards else 0)
        return await self._read_stream(stream_id, start, backwards, limit)

    async def stream_version(self, stream_id: str) -> int | None:
        """The revision of the last event in a stream, or None when it has none."""
        last = await self.read_stream(stream_id, backwards=True, limit=1)
        return last[0].stream_version if last else None

    async def read_all(
        self, *, after: int = 0, limit: int = 1000, filter: EventFilter | None = None
    ) -> list[RecordedEvent]:
        """Up to ``limit`` events with a global position greater than ``after``, in order.

        Only events that can no longer be preceded by a slower writer are returned,
        so a reader that resumes from the last position it saw never skips one.
        """
        self._check_open()
        if not isinstance(after, int) or after < 0:
            raise ValueError(f"after must be a position >= 0, not {after!r}")
        _check_limit(limit)
        return await self._read_all(after, limit, filter)

    async def subscribe(
        self,
        *,
        after: int = 0,
        filter: EventFilter | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Batches of events after a checkpoint: catch up, then follow live writes.

        The iterator never ends by itself; the consumer breaks out of it. Events come
        in global order, each once. Positions filtered out are skipped silently.
        """
        position = after
        while True:
            batch = await self.read_all(after=position, limit=batch_size, filter=filter)
            if batch:
                position = batch[-1].position
                yield batch
                continue
            await self._wait_for_new_events()

    async def load_checkpoint(self, name: str) -> int:
        """The position a named reader (a relay) stored last; 0 when it has none."""
        self._check_open()
        return await self._load_checkpoint(_check_name(name))

    async def save_checkpoint(self, name: str, position: int) -> None:
        """Durably store a named reader's position, beside the events it read."""
        self._check_open()
        if not isinstance(position, int) or position < 0:
            raise ValueError(f"a checkpoint is a position >= 0, not {position!r}")
        await self._save_checkpoint(_check_name(name), position)

    async def head_position(self) -> int:
        """The global position of the last event a reader may see (0 when empty)."""
        self._check_open()
        return await self._head_position()

    async def identity(self) -> str:
        """The identity (a UUID) this store was given when it was made, kept for its
        life and never replaced. Every envelope a relay publishes carries it, so that a
        topic's readers can tell one store's history from another's: a store that was
        reset starts stream versions at 0 again under the same stream ids. A store made
        before stores had one is given one when it is first opened."""
        self._check_open()
        return await self._identity()

    async def close(self) -> None:
        """Release connections; later calls raise :class:`StoreClosed`."""
        if not self._closed:
            self._closed = True
            await self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def seal(self) -> int:
        """Extend the ledger (the global chain) over every event visible to all readers;
        the number of events sealed. Appends do this as they go; ``civitas audit
        upgrade`` does it once for a store from before the ledger."""
        self._check_open()
        return await self._seal()

    async def verify(
        self, *, batch_size: int = 5000, progress: Progress | None = None
    ) -> ChainReport:
        """Check both chains from the rows as stored (see :mod:`audit`) and each
        snapshot's binding; name each broken stream's first bad global position.
        ``progress`` is told the position reached."""
        self._check_open()
        heads, sealed_to, inline = await self._verify_bounds()
        verifier = ChainVerifier(heads, sealed_to, inline)
        pairs = side_by_side(self._raw_rows(batch_size), self._ledger(batch_size, sealed_to))
        count = 0
        async for row, entry in pairs:
            verifier.feed(row, entry)
            count += 1
            if progress is not None and count % batch_size == 0:
                progress((row or entry or LedgerEntry(0, "", 0, b"")).position)
        for binding in verifier.bindings:
            covered = await self._read_stream(binding.stream_id, binding.stream_version, False, 1)
            found = covered[0] if covered else None
            ok = found is not None and found.stream_version == binding.stream_version
            verifier.snapshot_disagrees(binding, found.hash if found and ok else None)
        return verifier.finish()

    async def _raw_rows(self, batch_size: int) -> AsyncIterator[RawEvent]:
        after = 0
        while rows := await self._read_raw(after, batch_size):
            for row in rows:
                yield row
            after = rows[-1].position

    async def _ledger(self, batch_size: int, upto: int | None) -> AsyncIterator[LedgerEntry]:
        after = 0
        while upto is not None and (entries := await self._read_ledger(after, batch_size)):
            for entry in entries:
                if entry.position > upto:
                    return
                yield entry
            after = entries[-1].position

    # -- for backends -----------------------------------------------------

    @abc.abstractmethod
    async def _read_raw(self, after: int, limit: int) -> list[RawEvent]:
        """Stored rows after a global position, undecoded, in order."""

    async def _seal(self) -> int:
        """Extend the ledger over every visible event (a backend without one: 0)."""
        return 0

    async def _verify_bounds(
        self,
    ) -> tuple[dict[str, tuple[int, bytes]] | None, int | None, bool]:
        """The heads, the ledger's last position, and whether every event within the
        heads must be in the ledger already. Here: seal, then the ledger's last
        position, then the heads (both only grow, so the heads cover the ledger)."""
        await self._seal()
        sealed_to = await self._ledger_head()
        return await self._stream_heads(), sealed_to, False

    async def _ledger_head(self) -> int | None:
        """The ledger's last position (0 when empty; None: the backend keeps none)."""
        return None

    async def _read_ledger(self, after: int, limit: int) -> list[LedgerEntry]:
        """Ledger entries after a position, in order."""
        return []

    @abc.abstractmethod
    async def _stream_heads(self) -> dict[str, tuple[int, bytes]] | None:
        """Each stream's recorded last revision and hash (None: the backend keeps no
        head records)."""

    @abc.abstractmethod
    async def _append(
        self,
        stream_id: str,
        category: str,
        expected: ExpectedVersion,
        events: list[PreparedEvent],
    ) -> AppendResult: ...

    @abc.abstractmethod
    async def _read_stream(
        self, stream_id: str, start: int, backwards: bool, limit: int | None
    ) -> list[RecordedEvent]:
        """Events from revision ``start`` (inclusive) in the direction asked for."""

    @abc.abstractmethod
    async def _read_all(
        self, after: int, limit: int, filter: EventFilter | None
    ) -> list[RecordedEvent]: ...

    @abc.abstractmethod
    async def _head_position(self) -> int: ...

    @abc.abstractmethod
    async def _load_checkpoint(self, name: str) -> int: ...

    @abc.abstractmethod
    async def _save_checkpoint(self, name: str, position: int) -> None: ...

    @abc.abstractmethod
    async def _identity(self) -> str: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the event store is closed")

    def _prepare(self, stream_id: str, events: Sequence[NewEvent]) -> list[PreparedEvent]:
        if isinstance(events, NewEvent) or not isinstance(events, Sequence):
            raise InvalidEvent("events must be a sequence of NewEvent")
        seen: set[object] = set()
        prepared = []
        for event in events:
            prepared.append(self._prepare_one(stream_id, event))
            if event.event_id in seen:
                raise InvalidEvent(f"event id {event.event_id} appears twice in one append")
            seen.add(event.event_id)
        return prepared

    def _prepare_one(self, stream_id: str, event: NewEvent) -> PreparedEvent:
        if not isinstance(event, NewEvent):
            raise InvalidEvent(f"expected a NewEvent, got {type(event).__name__}")
        check_event_type(event.type)
        if not isinstance(event.schema_version, int) or event.schema_version < 1:
            raise InvalidEvent(f"schema_version must be an int >= 1, not {event.schema_version!r}")
        if not isinstance(event.data, dict):
            raise InvalidEvent(
                f"event data must be a JSON object (dict), not {type(event.data).__name__}"
            )
        data_json = canonical_json(event.data)
        size = len(data_json.encode())
        if size > self.max_event_bytes:
            raise EventTooLarge(
                f"event {event.type} is {size} bytes, over the limit of {self.max_event_bytes}"
            )
        occurred_at = event.occurred_at or self.clock.now()
        digest = content_digest(
            stream_id=stream_id,
            event_id=event.event_id,
            type=event.type,
            schema_version=event.schema_version,
            occurred_at=occurred_at,
            actor=event.actor,
            correlation_id=event.correlation_id,
            causation_id=event.causation_id,
            data_json=data_json,
        )
        return PreparedEvent(event, occurred_at, data_json, digest)

    async def _wait_for_new_events(self) -> None:
        """Sleep until this process appends or ``poll_interval`` passes (other writers)."""
        self._check_open()
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter[1].wait(), self.poll_interval)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)

    def _wake_subscribers(self) -> None:
        for loop, event in list(self._waiters):
            loop.call_soon_threadsafe(event.set)


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive int, not {limit!r}")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise ValueError(f"a checkpoint name is a string of 1 to 200 characters, not {name!r}")
    return name


def idempotent_result(
    stream_id: str, ids: list[str], found: list[tuple[Any, ...]]
) -> AppendResult | None:
    """None when no id is stored yet; the earlier result when all are, as this append."""
    if not found:
        return None
    found_ids = [str(row[0]) for row in found]
    same_append = (
        found_ids == ids
        and all(row[1] == stream_id for row in found)
        and [row[2] for row in found] == list(range(found[0][2], found[0][2] + len(found)))
    )
    if not same_append:
        raise EventIdConflict(
            stream_id, f"event ids {sorted(set(found_ids))} are stored already by another append"
        )
    return AppendResult(found[-1][2], found[-1][3])
