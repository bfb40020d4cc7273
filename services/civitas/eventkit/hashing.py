"""Canonical JSON and the per-stream hash chain.

Each event's hash is ``sha256(previous hash || content digest)``; the first event
of a stream chains to :data:`GENESIS`. The content digest covers every stored field
but the positions, and the data exactly as stored (canonical JSON), so changing any
stored byte of an event breaks the chain from that event on.
"""

from __future__ import annotations

import hashlib
import json
import struct
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import InvalidEvent

if TYPE_CHECKING:
    from .records import RecordedEvent

GENESIS = bytes(32)


def canonical_json(data: Any) -> str:
    """Serialize ``data`` as canonical JSON (sorted keys, no spaces, no NaN)."""
    try:
        return json.dumps(
            data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"event data is not JSON-serializable: {exc}") from None


def utc_iso(moment: datetime) -> str:
    """The UTC ISO-8601 form used in hashes and in the SQLite store."""
    if moment.tzinfo is None:
        raise InvalidEvent(f"occurred_at must be timezone-aware, got naive {moment!r}")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def content_digest(
    *,
    stream_id: str,
    event_id: uuid.UUID,
    type: str,
    schema_version: int,
    occurred_at: datetime,
    actor: str | None,
    correlation_id: str | None,
    causation_id: str | None,
    data_json: str,
) -> bytes:
    """The digest of one event's content, independent of where it sits in the store."""
    head = json.dumps(
        [
            stream_id,
            str(event_id),
            type,
            schema_version,
            utc_iso(occurred_at),
            actor,
            correlation_id,
            causation_id,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(head.encode() + b"\n" + data_json.encode()).digest()


def chain(previous: bytes, digest: bytes) -> bytes:
    """The next link of a stream's hash chain."""
    return hashlib.sha256(previous + digest).digest()


def global_link(
    previous: bytes, position: int, stream_id: str, stream_version: int, event_hash: bytes
) -> bytes:
    """The next link of the chain over the store's global order (the ledger).

    It covers the previous link, the event's stream hash (which covers its content and
    its stream's history), its global position, its revision and its stream:
    ``sha256(previous || hash || position (8 bytes, big-endian) || revision (8 bytes) ||
    stream id (UTF-8))``, the one field of variable length last. The PostgreSQL store
    computes the same bytes in SQL (``int8send``)."""
    return hashlib.sha256(
        previous
        + bytes(event_hash)
        + struct.pack(">qq", position, stream_version)
        + stream_id.encode()
    ).digest()


def ledger_links(
    previous: bytes, rows: Iterable[tuple[int, str, int, bytes]]
) -> list[tuple[int, str, int, bytes]]:
    """Extend the global chain from ``previous`` over ``(position, stream id, revision,
    hash)`` rows in position order: the ledger entries, each with its link."""
    entries = []
    for position, stream_id, stream_version, event_hash in rows:
        previous = global_link(previous, position, stream_id, stream_version, event_hash)
        entries.append((position, stream_id, stream_version, previous))
    return entries


def first_broken_link(events: Iterable[RecordedEvent]) -> RecordedEvent | None:
    """The first event of one stream (read forwards from revision 0) whose hash is wrong."""
    previous = GENESIS
    for expected_version, event in enumerate(events):
        digest = content_digest(
            stream_id=event.stream_id,
            event_id=event.event_id,
            type=event.type,
            schema_version=event.schema_version,
            occurred_at=event.occurred_at,
            actor=event.actor,
            correlation_id=event.correlation_id,
            causation_id=event.causation_id,
            data_json=canonical_json(event.data),
        )
        previous = chain(previous, digest)
        if event.stream_version != expected_version or event.hash != previous:
            return event
    return None
