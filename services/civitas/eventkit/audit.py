"""Verifying a store's hash chains from the rows as stored.

Each stored event's hash is ``sha256(previous hash || content digest)`` (see
:mod:`hashing`). Verification reads the raw rows in global order, recomputes every
stream's chain from the stored text (the data exactly as stored, not as decoded),
and names each stream's first broken link: a changed byte, a missing or repeated
revision, or a stream head that disagrees with its last event (a cut-off tail).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from .hashing import GENESIS, chain, content_digest


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


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """The first event of a stream whose stored hash does not follow from its content."""

    stream_id: str
    stream_version: int
    position: int | None
    reason: str


@dataclass
class ChainReport:
    """What verification found: counts, and each broken stream's first broken link."""

    streams: int = 0
    events: int = 0
    broken: list[BrokenLink] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.broken


class ChainVerifier:
    """Recomputes hash chains over raw rows fed in global order.

    Given the streams' head records, read *before* the rows, it checks the store as
    those heads describe it: each stream up to its head revision, whose hash must
    match the head's. Events appended while the rows are read lie beyond the heads
    and are not judged, so a busy store is not reported broken. Without head records
    (a backend that keeps none) every row is checked and a cut-off tail cannot be
    seen."""

    def __init__(self, heads: dict[str, tuple[int, bytes]] | None = None) -> None:
        self._expected = heads
        self._heads: dict[str, tuple[int, bytes]] = {}
        self._broken: dict[str, BrokenLink] = {}
        self.events = 0

    def feed(self, row: RawEvent) -> None:
        if self._expected is not None:
            head = self._expected.get(row.stream_id)
            if head is None or row.stream_version > head[0]:
                return  # appended after the heads were read: not part of this check
        self.events += 1
        if row.stream_id in self._broken:
            return  # only the first broken link of a stream is named
        version, previous = self._heads.get(row.stream_id, (-1, GENESIS))
        if row.stream_version != version + 1:
            self._break(row, f"revision {row.stream_version} follows {version}")
            return
        try:
            occurred = (
                row.occurred_at
                if isinstance(row.occurred_at, datetime)
                else datetime.fromisoformat(row.occurred_at)
            )
            digest = content_digest(
                stream_id=row.stream_id,
                event_id=uuid.UUID(str(row.event_id)),
                type=row.type,
                schema_version=row.schema_version,
                occurred_at=occurred,
                actor=row.actor,
                correlation_id=row.correlation_id,
                causation_id=row.causation_id,
                data_json=row.data,
            )
        except (ValueError, TypeError) as unreadable:
            self._break(row, f"unreadable: {unreadable}")
            return
        link = chain(previous, digest)
        if link != bytes(row.hash):
            self._break(row, "the stored hash does not follow from the stored content")
            return
        head = (self._expected or {}).get(row.stream_id)
        if head is not None and head[0] == row.stream_version and bytes(head[1]) != link:
            self._break(row, "the stream's head record does not match its last event")
            return
        self._heads[row.stream_id] = (row.stream_version, link)

    def finish(self) -> ChainReport:
        """Name the streams whose events end before their head record says, and report."""
        for stream_id, (version, _) in (self._expected or {}).items():
            if stream_id in self._broken:
                continue
            seen = self._heads.get(stream_id, (-1, b""))[0]
            if seen < version:
                self._broken[stream_id] = BrokenLink(
                    stream_id,
                    seen + 1,
                    None,
                    f"the stream's head says revision {version}, its events end at {seen}",
                )
        streams = set(self._heads) | set(self._broken) | set(self._expected or {})
        broken = sorted(self._broken.values(), key=lambda b: (b.position is None, b.position))
        return ChainReport(len(streams), self.events, broken)

    def _break(self, row: RawEvent, reason: str) -> None:
        self._broken[row.stream_id] = BrokenLink(
            row.stream_id, row.stream_version, row.position, reason
        )


Progress = Callable[[int], None]
