"""Verifying a store's hash chains from the rows as stored.

Two chains cover every event:

- its **stream's** chain: each event's hash is ``sha256(previous hash || content
  digest)`` (see :mod:`hashing`), and the stream's head record holds the last one;
- the store's **global** chain, the *ledger*: one entry per event in global order,
  each link ``sha256(previous link || event hash || position || revision || stream)``.
  A sealer extends it over events that are visible to every reader (on SQLite the
  writer does so in the commit that stores them; on PostgreSQL each append seals the
  rows committed before it, and verify seals first).

Verification reads the raw rows and the ledger side by side in global order. Every
event up to the ledger's last entry (sealed) must have its entry and every entry its
event, with the link recomputed; every sealed event must lie within its stream's head
record. Events after the last entry are judged by their stream's chain only, and
only up to the heads read before the rows, so a busy store is not reported broken.
Each stream's first bad global position is named, with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from .hashing import GENESIS, chain, content_digest, global_link
from .records import stream_parts

SNAPSHOT_SUFFIX = "_snapshot"  # snapshots of ``case-42`` go to ``case_snapshot-42``


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One stored row, undecoded: what the hash covers."""

    position: int
    stream_id: str
    stream_version: int
    event_id: str
    type: str
    schema_version: int
    occurred_at: datetime | str
    actor: str | None
    correlation_id: str | None
    causation_id: str | None
    data: str
    hash: bytes
    category: str | None = None
    """As stored, for the category filter (None: the backend derives it)."""

    @property
    def moment(self) -> datetime:
        """When it occurred, as a datetime (SQLite keeps ISO text)."""
        moment = self.occurred_at
        return moment if isinstance(moment, datetime) else datetime.fromisoformat(moment)

    def content_digest(self, data: str | None = None) -> bytes:
        """The digest of the row's content as stored (or with ``data`` in its place)."""
        return content_digest(
            stream_id=self.stream_id,
            event_id=uuid.UUID(str(self.event_id)),
            type=self.type,
            schema_version=self.schema_version,
            occurred_at=self.moment,
            actor=self.actor,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            data_json=self.data if data is None else data,
        )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One link of the global chain: which event sits at a position, and the link."""

    position: int
    stream_id: str
    stream_version: int
    link: bytes


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """The first bad position of a stream: where its history stops being what was
    stored (``position`` None only for a head record with no event of its stream)."""

    stream_id: str
    stream_version: int
    position: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class SnapshotBinding:
    """What a snapshot says it summarizes: a stream up to a revision with that hash."""

    position: int
    snapshot_stream: str
    snapshot_version: int
    stream_id: str
    stream_version: int
    hash: str


@dataclass
class ChainReport:
    """What verification found: counts, and each broken stream's first bad position,
    earliest first."""

    streams: int = 0
    events: int = 0
    broken: list[BrokenLink] = field(default_factory=list)
    sealed: int = 0
    """Events checked against the ledger."""
    unsealed: int = 0
    """Events after the ledger's last entry, checked by their stream's chain only."""
    digest: bytes | None = None
    """The ledger's last link as checked (None: the backend keeps no ledger)."""
    snapshots: int = 0
    unbound_snapshots: int = 0
    """Snapshots from before bindings: never trusted, the repository rebuilds instead."""

    @property
    def intact(self) -> bool:
        return not self.broken

    @property
    def first(self) -> BrokenLink | None:
        """The first bad global position in the store, with its stream."""
        return self.broken[0] if self.broken else None


class ChainVerifier:
    """Checks raw rows and ledger entries fed in global order.

    ``heads`` (each stream's revision and hash, read *before* the rows, after the
    ledger's last position) bound what is judged beyond the ledger; ``sealed_to`` is
    the ledger's last position (None: the backend keeps no ledger, and without head
    records either every row is judged and a cut-off tail cannot be seen). With
    ``sealed_inline`` (SQLite: the commit that stores events seals them, and heads and
    ledger were read in one transaction) an event within the heads but beyond the
    ledger was put there behind the store's back."""

    def __init__(
        self,
        heads: dict[str, tuple[int, bytes]] | None = None,
        sealed_to: int | None = None,
        sealed_inline: bool = False,
    ) -> None:
        self._expected = heads
        self._sealed_to = sealed_to
        self._inline = sealed_inline
        self._link = GENESIS
        self._heads: dict[str, tuple[int, bytes, int]] = {}
        self._broken: dict[str, BrokenLink] = {}
        self.bindings: list[SnapshotBinding] = []
        self.events = self.sealed = self.unsealed = self.unbound = 0

    def feed(self, row: RawEvent | None, entry: LedgerEntry | None = None) -> None:
        """One position: its row, its ledger entry, or both."""
        position = row.position if row is not None else entry.position if entry else 0
        sealed = self._sealed_to is not None and position <= self._sealed_to
        if sealed:
            self._check_ledger(row, entry)
        if row is None:
            return
        if not sealed and self._expected is not None:
            head = self._expected.get(row.stream_id)
            if head is None or row.stream_version > head[0]:
                return  # appended after the heads were read: not part of this check
        if not sealed and self._inline:
            hint = " (a store from before the ledger: civitas audit upgrade)"
            self._break(row, "the event is not in the ledger" + (hint * (not self._sealed_to)))
        elif not sealed and self._sealed_to is not None:
            self.unsealed += 1
        self._check_stream(row)

    def _check_ledger(self, row: RawEvent | None, entry: LedgerEntry | None) -> None:
        if entry is None:
            assert row is not None
            self._break(row, "the event is not in the ledger (put there behind the store's back)")
            return
        self.sealed += 1
        previous, self._link = self._link, bytes(entry.link)
        if row is None:
            self._break(entry, "the ledger has this event, the store has not (deleted)")
            return
        if (row.stream_id, row.stream_version) != (entry.stream_id, entry.stream_version):
            self._break(
                row,
                f"the ledger has {entry.stream_id} revision {entry.stream_version} here "
                "(moved or replaced)",
            )
            return
        link = global_link(previous, row.position, row.stream_id, row.stream_version, row.hash)
        if link != self._link:
            self._break(row, "the ledger's link does not follow (the event or the ledger changed)")

    def _check_stream(self, row: RawEvent) -> None:
        self.events += 1
        if row.stream_id in self._broken:
            return  # only the first broken link of a stream is named
        version, previous, _ = self._heads.get(row.stream_id, (-1, GENESIS, 0))
        if row.stream_version != version + 1:
            self._break(row, f"revision {row.stream_version} follows {version}")
            return
        try:
            link = chain(previous, row.content_digest())
        except (ValueError, TypeError) as unreadable:
            self._break(row, f"unreadable: {unreadable}")
            return
        if link != bytes(row.hash):
            self._break(row, "the stored hash does not follow from the stored content")
            return
        if row.category is not None and row.category != stream_parts(row.stream_id)[0]:
            self._break(row, f"the stored category {row.category!r} is not the stream's")
            return
        if reason := self._head_disagrees(row, link):
            self._break(row, reason)
            return
        self._heads[row.stream_id] = (row.stream_version, link, row.position)
        self._bind_snapshot(row)

    def _head_disagrees(self, row: RawEvent, link: bytes) -> str | None:
        if self._expected is None:
            return None
        head = self._expected.get(row.stream_id)
        if head is None:
            return "the stream has no head record"
        if row.stream_version > head[0]:
            return f"the stream's head record says revision {head[0]}, behind this event"
        if head[0] == row.stream_version and bytes(head[1]) != link:
            return "the stream's head record does not match its last event"
        return None

    def _bind_snapshot(self, row: RawEvent) -> None:
        category, entity = stream_parts(row.stream_id)
        if not category.endswith(SNAPSHOT_SUFFIX):
            return
        covers = snapshot_covers(row.data)
        if covers is None:
            self.unbound += 1
            return
        stream_id = f"{category.removesuffix(SNAPSHOT_SUFFIX)}-{entity}"
        self.bindings.append(
            SnapshotBinding(row.position, row.stream_id, row.stream_version, stream_id, *covers)
        )

    def snapshot_disagrees(self, binding: SnapshotBinding, stored_hash: bytes | None) -> None:
        """Name a snapshot whose covered event does not have the hash it records."""
        if stored_hash is None or stored_hash.hex() != binding.hash:
            self._broken.setdefault(
                binding.snapshot_stream,
                BrokenLink(
                    binding.snapshot_stream,
                    binding.snapshot_version,
                    binding.position,
                    f"the snapshot says it covers {binding.stream_id} revision "
                    f"{binding.stream_version}, whose stored hash differs (forged or stale)",
                ),
            )

    def finish(self) -> ChainReport:
        """Name the streams whose events end before their head record says, and report."""
        for stream_id, (version, _) in (self._expected or {}).items():
            if stream_id in self._broken:
                continue
            seen, _, position = self._heads.get(stream_id, (-1, b"", None))
            if seen < version:
                self._broken[stream_id] = BrokenLink(
                    stream_id,
                    seen + 1,
                    position,
                    f"the stream's head says revision {version}, its events end at {seen}",
                )
        streams = set(self._heads) | set(self._broken) | set(self._expected or {})
        broken = sorted(self._broken.values(), key=lambda b: (b.position is None, b.position))
        return ChainReport(
            len(streams),
            self.events,
            broken,
            self.sealed,
            self.unsealed,
            self._link if self._sealed_to is not None else None,
            len(self.bindings) + self.unbound,
            self.unbound,
        )

    def _break(self, at: RawEvent | LedgerEntry, reason: str) -> None:
        self._broken.setdefault(
            at.stream_id, BrokenLink(at.stream_id, at.stream_version, at.position, reason)
        )


def snapshot_covers(data: str | dict[str, Any]) -> tuple[int, str] | None:
    """The revision and hash (hex) a snapshot's data says it covers; None without."""
    try:
        parsed: Any = orjson.loads(data) if isinstance(data, str) else data
        covers = parsed["covers"]
        version, digest = covers["version"], covers["hash"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(version, int) or not isinstance(digest, str):
        return None
    return version, digest


async def side_by_side(
    rows: AsyncIterator[RawEvent], entries: AsyncIterator[LedgerEntry]
) -> AsyncIterator[tuple[RawEvent | None, LedgerEntry | None]]:
    """Rows and ledger entries (each in position order) paired by position."""
    row = await anext(rows, None)
    entry = await anext(entries, None)
    while row is not None or entry is not None:
        if entry is None or (row is not None and row.position < entry.position):
            yield row, None
            row = await anext(rows, None)
        elif row is None or entry.position < row.position:
            yield None, entry
            entry = await anext(entries, None)
        else:
            yield row, entry
            row, entry = await anext(rows, None), await anext(entries, None)


Progress = Callable[[int], None]
