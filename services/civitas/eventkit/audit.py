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
    """Recomputes hash chains over raw rows fed in global order."""

    def __init__(self) -> None:
        self._heads: dict[str, tuple[int, bytes]] = {}
        self._broken: dict[str, BrokenLink] = {}
        self.events = 0

    def feed(self, row: RawEvent) -> None:
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
        self._heads[row.stream_id] = (row.stream_version, link)

    def finish(self, stream_heads: dict[str, tuple[int, bytes]]) -> ChainReport:
        """Compare each stream's recorded head with its last event, and report."""
        for stream_id, (version, head_hash) in stream_heads.items():
            if stream_id in self._broken:
                continue
            last = self._heads.get(stream_id)
            if last is None or last[0] != version or last[1] != bytes(head_hash):
                seen = last[0] if last else -1
                self._broken[stream_id] = BrokenLink(
                    stream_id,
                    seen + 1,
                    None,
                    f"the stream's head says revision {version}, its events end at {seen}",
                )
        streams = set(self._heads) | set(self._broken) | set(stream_heads)
        broken = sorted(self._broken.values(), key=lambda b: (b.position is None, b.position))
        return ChainReport(len(streams), self.events, broken)

    def _break(self, row: RawEvent, reason: str) -> None:
        self._broken[row.stream_id] = BrokenLink(
            row.stream_id, row.stream_version, row.position, reason
        )


Progress = Callable[[int], None]
