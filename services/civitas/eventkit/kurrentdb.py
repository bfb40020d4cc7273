"""The event store on KurrentDB (EventStoreDB), through the maintained client
``kurrentdbclient``.

The store's meaning is KurrentDB's own, so this adapter is thin:

- a Civitas stream ``case-42`` is the KurrentDB stream ``<namespace>.case-42`` (the
  namespace lets services, or test runs, share one server without sharing streams);
- revisions are KurrentDB stream positions; the global position is the commit
  position (increasing, not contiguous);
- event data is the canonical JSON; metadata carries what KurrentDB has no field for:
  schema version, occurred at, actor, correlation and causation ids, and the hash
  chained to the stream's previous event (computed here: the previous hash is read
  before each append, whose expected revision then guards the chain);
- checkpoints are the last event of a stream ``<namespace>@checkpoint-<name>``, outside
  the pattern event readers use.

URL: ``kurrentdb://host:2113?tls=false&namespace=cases`` (``esdb://`` works too);
``namespace`` is read here and every other part goes to the client.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from kurrentdbclient import AsyncKurrentDBClient
from kurrentdbclient import NewEvent as KurrentEvent
from kurrentdbclient import RecordedEvent as KurrentRecorded
from kurrentdbclient import StreamState as KurrentState
from kurrentdbclient.exceptions import NotFoundError, WrongCurrentVersionError

from .audit import RawEvent
from .errors import ConcurrencyError, EventIdConflict, EventStoreError
from .hashing import GENESIS, chain
from .records import AppendResult, EventFilter, ExpectedVersion, RecordedEvent, StreamState
from .store import EventStore, PreparedEvent

#: How far back an append looks for its own event ids, to make a retry a no-op.
IDEMPOTENCY_WINDOW = 1000
_NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def split_url(url: str) -> tuple[str, str]:
    """The client's URI and the namespace (default ``civitas``) from a store URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    namespace = next((v for k, v in query if k == "namespace"), "civitas")
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"namespace {namespace!r} must be a short lower-case identifier")
    rest = urlencode([(k, v) for k, v in query if k != "namespace"])
    scheme = "kurrentdb" if parts.scheme in ("kurrentdb", "kdb") else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, rest, "")), namespace


def metadata_of(prepared: PreparedEvent, link: bytes) -> bytes:
    event = prepared.event
    return json.dumps(
        {
            "schema_version": event.schema_version,
            "occurred_at": prepared.occurred_at.isoformat(timespec="microseconds"),
            "actor": event.actor,
            "correlation_id": event.correlation_id,
            "causation_id": event.causation_id,
            "hash": link.hex(),
            **({"trace_context": dict(event.trace_context)} if event.trace_context else {}),
        },
        separators=(",", ":"),
    ).encode()


def include_patterns(namespace: str, filter: EventFilter | None) -> tuple[list[str], bool]:
    """Server-side filter: by stream name (the namespace and categories), and whether
    event types must still be checked here (KurrentDB filters on one of the two)."""
    prefix = re.escape(namespace) + r"\."
    if filter is not None and filter.categories:
        categories = "|".join(re.escape(c) for c in filter.categories)
        return [f"{prefix}({categories})-.*"], bool(filter.event_types)
    return [f"{prefix}.*"], bool(filter is not None and filter.event_types)


class KurrentDBEventStore(EventStore):
    """Event store on a KurrentDB server, one namespace of it."""

    def __init__(self, client: AsyncKurrentDBClient, namespace: str, **options: Any) -> None:
        super().__init__(**options)
        self._client = client
        self.namespace = namespace

    @classmethod
    async def open(cls, url: str, **options: Any) -> KurrentDBEventStore:
        uri, namespace = split_url(url)
        client = AsyncKurrentDBClient(uri)
        await client.connect()
        return cls(client, namespace, **options)

    # -- names ----------------------------------------------------------------------

    def _server_name(self, stream_id: str) -> str:
        return f"{self.namespace}.{stream_id}"

    def _own_name(self, server_name: str) -> str:
        return server_name.removeprefix(f"{self.namespace}.")

    def _checkpoint_stream(self, name: str) -> str:
        """Outside the namespace's pattern, so readers of events never see it."""
        return f"{self.namespace}@checkpoint-{name}"

    def _identity_stream(self) -> str:
        """Where the namespace's identity is kept (its first event), outside the pattern."""
        return f"{self.namespace}@store"

    # -- the backend ------------------------------------------------------------------

    async def _append(
        self,
        stream_id: str,
        category: str,
        expected: ExpectedVersion,
        events: list[PreparedEvent],
    ) -> AppendResult:
        name = self._server_name(stream_id)
        recent = await self._recent(name)
        done = self._already_appended(stream_id, events, recent)
        if done is not None:
            return done
        current = recent[-1].stream_position if recent else None
        self._check_expected(stream_id, expected, current)
        previous = _hash_of(recent[-1]) if recent else GENESIS
        new_events = []
        for prepared in events:
            previous = chain(previous, prepared.digest)
            new_events.append(
                KurrentEvent(
                    type=prepared.event.type,
                    data=prepared.data_json.encode(),
                    metadata=metadata_of(prepared, previous),
                    id=prepared.event.event_id,
                )
            )
        if not new_events:
            return AppendResult(current if current is not None else -1, None)
        try:
            position = await self._client.append_to_stream(
                name,
                events=new_events,
                current_version=KurrentState.NO_STREAM if current is None else current,
            )
        except WrongCurrentVersionError:
            raise ConcurrencyError(stream_id, expected, None) from None
        version = (current if current is not None else -1) + len(new_events)
        return AppendResult(version, position)

    async def _recent(self, name: str) -> list[KurrentRecorded]:
        """The stream's last events (oldest first), up to the idempotency window."""
        try:
            found = await self._client.read_stream(name, backwards=True, limit=IDEMPOTENCY_WINDOW)
            return list(reversed([e async for e in found]))
        except NotFoundError:
            return []

    @staticmethod
    def _already_appended(
        stream_id: str, events: list[PreparedEvent], recent: list[KurrentRecorded]
    ) -> AppendResult | None:
        """A retry of an append that is stored already returns its first result."""
        ids = [p.event.event_id for p in events]
        stored = {e.id: e for e in recent}
        present = [i for i in ids if i in stored]
        if not present:
            return None
        if present != ids:
            raise EventIdConflict(stream_id, "some of these event ids are stored already")
        last = stored[ids[-1]]
        return AppendResult(last.stream_position, last.commit_position)

    @staticmethod
    def _check_expected(stream_id: str, expected: ExpectedVersion, current: int | None) -> None:
        ok = (
            expected is StreamState.ANY
            or (expected is StreamState.NO_STREAM and current is None)
            or (expected is StreamState.EXISTS and current is not None)
            or (isinstance(expected, int) and expected == current)
        )
        if not ok:
            raise ConcurrencyError(stream_id, expected, current)

    async def _read_stream(
        self, stream_id: str, start: int, backwards: bool, limit: int | None
    ) -> list[RecordedEvent]:
        try:
            found = await self._client.read_stream(
                self._server_name(stream_id),
                stream_position=None if start >= 2**62 else start,
                backwards=backwards,
                limit=limit or 2**62,
            )
            return [self._decode(e) async for e in found]
        except NotFoundError:
            return []

    async def _read_all(
        self, after: int, limit: int, filter: EventFilter | None
    ) -> list[RecordedEvent]:
        """Up to ``limit`` events after ``after``. Event types are checked here when the
        server filtered by stream name, so pages are read on until enough match or the
        log ends (a page of none that match must not look like the end)."""
        patterns, by_type = include_patterns(self.namespace, filter)
        events: list[RecordedEvent] = []
        cursor = after
        while len(events) < limit:
            found = await self._client.read_all(
                commit_position=cursor or None,
                filter_include=patterns,
                filter_by_stream_name=True,
                limit=max(limit, 500) + 1,
            )
            page = [r async for r in found if (r.commit_position or 0) > cursor]
            if not page:
                break
            for recorded in page:
                cursor = recorded.commit_position or cursor
                event = self._decode(recorded)
                if not by_type or (filter is not None and filter.matches(event)):
                    events.append(event)
                    if len(events) == limit:
                        break
        return events

    async def _read_raw(self, after: int, limit: int) -> list[RawEvent]:
        patterns, _ = include_patterns(self.namespace, None)
        found = await self._client.read_all(
            commit_position=after or None,
            filter_include=patterns,
            filter_by_stream_name=True,
            limit=limit + 1,
        )
        rows = []
        async for e in found:
            if e.commit_position is None or e.commit_position <= after:
                continue
            meta = json.loads(e.metadata or b"{}")
            rows.append(
                RawEvent(
                    e.commit_position,
                    self._own_name(e.stream_name),
                    e.stream_position,
                    str(e.id),
                    e.type,
                    int(meta.get("schema_version", 1)),
                    str(meta.get("occurred_at", "")),
                    meta.get("actor"),
                    meta.get("correlation_id"),
                    meta.get("causation_id"),
                    e.data.decode(),
                    bytes.fromhex(meta.get("hash", "")),
                )
            )
        return rows[:limit]

    async def _stream_heads(self) -> dict[str, tuple[int, bytes]] | None:
        return None  # KurrentDB keeps no head record apart from the events themselves

    async def _head_position(self) -> int:
        patterns, _ = include_patterns(self.namespace, None)
        position = await self._client.get_commit_position(
            filter_include=patterns, filter_by_stream_name=True
        )
        return int(position or 0)

    async def _load_checkpoint(self, name: str) -> int:
        try:
            found = await self._client.read_stream(
                self._checkpoint_stream(name), backwards=True, limit=1
            )
            last = [e async for e in found]
        except NotFoundError:
            return 0
        return int(json.loads(last[0].data)["position"]) if last else 0

    async def _save_checkpoint(self, name: str, position: int) -> None:
        await self._client.append_to_stream(
            self._checkpoint_stream(name),
            events=KurrentEvent(
                type="CheckpointSaved", data=json.dumps({"position": position}).encode()
            ),
            current_version=KurrentState.ANY,
        )

    async def _identity(self) -> str:
        """The first event of the identity stream; the first reader of a namespace
        without one writes it (expecting no stream: of two at once, one wins)."""
        if kept := await self._kept_identity():
            return kept
        made = json.dumps({"identity": str(uuid.uuid4())}).encode()
        with contextlib.suppress(WrongCurrentVersionError):
            await self._client.append_to_stream(
                self._identity_stream(),
                events=KurrentEvent(type="StoreIdentityMade", data=made),
                current_version=KurrentState.NO_STREAM,
            )
        if kept := await self._kept_identity():
            return kept
        raise EventStoreError(f"{self._identity_stream()} holds no identity")

    async def _kept_identity(self) -> str | None:
        with contextlib.suppress(NotFoundError):
            found = await self._client.read_stream(self._identity_stream(), limit=1)
            async for first in found:
                return str(json.loads(first.data)["identity"])
        return None

    async def _close(self) -> None:
        await self._client.close()

    def _decode(self, e: KurrentRecorded) -> RecordedEvent:
        meta = json.loads(e.metadata or b"{}")
        return RecordedEvent(
            uuid.UUID(str(e.id)),
            self._own_name(e.stream_name),
            e.stream_position,
            e.commit_position or 0,
            e.type,
            int(meta.get("schema_version", 1)),
            datetime.fromisoformat(meta["occurred_at"]),
            meta.get("actor"),
            meta.get("correlation_id"),
            meta.get("causation_id"),
            json.loads(e.data),
            bytes.fromhex(meta.get("hash", "")),
            trace_context=meta.get("trace_context"),
        )


def _hash_of(e: KurrentRecorded) -> bytes:
    return bytes.fromhex(json.loads(e.metadata or b"{}").get("hash", ""))


__all__: Sequence[str] = ["KurrentDBEventStore", "split_url"]
