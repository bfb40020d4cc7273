"""Parked events: what a consumer could not apply, kept in its own database, in order.

A consumer (projection or process manager) parks an event it cannot apply (it cannot
be decoded, fails its check, fails its handler every time, or arrives with a stream
version beyond the next one) with the reason, the attempts and the error, and goes
on with other streams. Parking keeps each stream's order, as Axon's sequenced
dead-letter queue does: from a stream's first open parked version on, its later
events are parked behind it, so no read model applies event n+1 without n. Earlier
versions still flow: a forged event far ahead blocks only what comes after it. An
event of another store's history (a reset store's) blocks nothing: each of them is
parked as ``origin`` by itself, and the stream's own history goes on.

A row is never deleted. Its ``state`` says what became of it: ``parked``; ``retry``
(an operator asked the running consumer to run the sequence again); ``applied`` (a
retry applied it); ``dropping`` then ``dropped`` (an operator gave it up, with who,
why and when; the running consumer passes it over once, and its stream waits behind
it until then). Passed over, a dropped event counts as handled when it is its stream's
next one and no other event waits parked at its version (a forged event and the
genuine one behind it): a dropped forgery never takes the genuine event's place. The
events behind a dropped one stay parked until they are retried or dropped too: a
stream whose parked events were all dropped flows again. The consumer moves a row
only from the state it expects (``retry``, ``dropping``), so an operator's drop
during a running retry stays a drop.

What a row keeps of a message is bounded by its columns: a claimed stream id, a type
or an origin too long for its column is cut, and the reason says so, so that parking
a message never fails on what the message claims.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from .readmodels import create_tables
from .records import RecordedEvent

PARKED = "parked"
RETRY = "retry"
APPLIED = "applied"
DROPPING = "dropping"  # dropped by an operator; the consumer has yet to pass it over
DROPPED = "dropped"
ORIGIN = "origin"  # the kind of parking that blocks no stream (see Parking.blocks)
OPEN = (PARKED, RETRY)  # what the consumer holds parked
BLOCKING = (*OPEN, DROPPING)  # what its stream waits behind
STREAM_ID_LENGTH, TYPE_LENGTH, KEY_LENGTH, REASON_LENGTH = 255, 200, 300, 1000
CATEGORY_LENGTH, ORIGIN_LENGTH = 64, 200

parking = sa.MetaData()
parked_table = sa.Table(
    "parked_events",
    parking,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("consumer", sa.String(200), nullable=False),
    sa.Column("key", sa.String(KEY_LENGTH), nullable=False),  # event id, or where a message was
    sa.Column("stream_id", sa.String(STREAM_ID_LENGTH), nullable=False),
    sa.Column("stream_version", sa.BigInteger, nullable=True),  # None: not decoded
    sa.Column("position", sa.BigInteger, nullable=True),
    sa.Column("event_type", sa.String(TYPE_LENGTH), nullable=True),
    sa.Column("reason", sa.String(REASON_LENGTH), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),  # the event as JSON, or raw bytes
    sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("resolved_by", sa.String(200), nullable=True),
    sa.Column("resolution", sa.String(1000), nullable=True),
    sa.UniqueConstraint("consumer", "key", name="parked_events_once"),
    sa.Index("parked_events_by_stream", "consumer", "state", "stream_id", "stream_version"),
)
origins_table = sa.Table(  # the store identity a consumer first saw per stream category
    "consumer_origins",
    parking,
    sa.Column("consumer", sa.String(200), primary_key=True),
    sa.Column("category", sa.String(CATEGORY_LENGTH), primary_key=True),
    sa.Column("origin", sa.String(ORIGIN_LENGTH), nullable=False),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Parking:
    """Why an event is parked (``kind``: undecodable, invalid, failed, gap, out_of_order,
    origin or behind; the metric's label), and what was tried."""

    kind: str
    detail: str
    error: str | None = None
    attempts: int = 0

    @property
    def reason(self) -> str:
        """What ``civitas dlq`` shows: the kind, then the detail."""
        return f"{self.kind}: {self.detail}"

    @property
    def blocks(self) -> bool:
        """Whether the event's stream waits behind it: not for an event of another
        store's history (every event of that store parks as ``origin`` by itself, and
        the stream's own history goes on)."""
        return self.kind != ORIGIN


@dataclasses.dataclass(frozen=True, slots=True)
class Undecodable:
    """A message a feed could not decode: its bytes, where it was, and why."""

    key: str  # where it was (topic[partition]@offset): unique per consumer
    stream_id: str  # the message key, as claimed: never used to block a stream
    raw: bytes
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class ParkedEvent:
    """One row of a consumer's parked events, as ``civitas dlq`` shows it."""

    id: int
    consumer: str
    stream_id: str
    stream_version: int | None
    event_type: str | None
    reason: str
    error: str | None
    attempts: int
    state: str
    parked_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    payload: bytes

    def event(self) -> RecordedEvent | None:
        """The parked event, or None for a message that was never decoded."""
        return None if self.stream_version is None else event_from_json(self.payload)

    @property
    def blocks(self) -> bool:
        """Whether its stream waits behind it: not for a message never decoded (its
        stream id is only claimed) nor for an event of another store's history."""
        return self.stream_version is not None and not self.reason.startswith(f"{ORIGIN}:")


def event_to_json(event: RecordedEvent) -> bytes:
    """The event as it is kept: every field, so that a retry applies the same event."""
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    fields["hash"] = event.hash.hex()
    return orjson.dumps(fields)


def event_from_json(payload: bytes) -> RecordedEvent:
    """The event :func:`event_to_json` kept."""
    fields: dict[str, Any] = orjson.loads(payload)
    fields["event_id"] = uuid.UUID(fields["event_id"])
    fields["occurred_at"] = datetime.fromisoformat(fields["occurred_at"])
    fields["hash"] = bytes.fromhex(fields["hash"])
    return RecordedEvent(**fields)


def park(conn: sa.Connection, consumer: str, event: RecordedEvent, why: Parking) -> None:
    """Keep ``event`` as parked, once: redelivered while parked, it changes nothing; met
    again after a retry applied it or an operator dropped it (a rebuild replays it),
    it is parked again, so that its stream stays blocked behind it as the first time
    (a dropped one is dropped again by the operator: a rebuild decides nothing alone)."""
    _insert_once(
        conn,
        consumer=consumer,
        key=str(event.event_id),
        stream_id=event.stream_id,
        stream_version=event.stream_version,
        position=event.position,
        event_type=event.type,
        payload=event_to_json(event),
        why=why,
    )


def park_undecodable(conn: sa.Connection, consumer: str, message: Undecodable) -> None:
    """Keep a message that is not an event, with its raw bytes (base64 in the payload)."""
    _insert_once(
        conn,
        consumer=consumer,
        key=message.key,
        stream_id=message.stream_id,
        stream_version=None,
        position=None,
        event_type=None,
        payload=base64.b64encode(message.raw),
        why=Parking("undecodable", message.reason),
    )


def _insert_once(conn: sa.Connection, *, why: Parking, **row: Any) -> None:
    row, cut = _bounded(row)
    values = {
        **row,
        "reason": str(_text(why.reason))[: REASON_LENGTH - len(cut)] + cut,
        "error": _text(why.error),
        "attempts": why.attempts,
        "state": PARKED,
        "parked_at": datetime.now(UTC),
    }
    found = conn.execute(
        sa.select(parked_table.c.id, parked_table.c.state).where(
            parked_table.c.consumer == row["consumer"], parked_table.c.key == row["key"]
        )
    ).first()
    if found is None:
        conn.execute(parked_table.insert().values(**values))
    elif found.state not in BLOCKING:  # met again (a rebuild): parked again, history kept
        reopened = {k: values[k] for k in ("reason", "error", "attempts", "state", "parked_at")}
        conn.execute(parked_table.update().where(parked_table.c.id == found.id).values(reopened))


def _text(value: str | None) -> str | None:
    """A text as a column takes it: PostgreSQL's text holds no NUL character."""
    return None if value is None else value.replace("\x00", "\ufffd")


def _bounded(row: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The row's claimed texts cut to their columns, and a note of what was cut."""
    notes = []
    for column, length in (("key", KEY_LENGTH), ("stream_id", STREAM_ID_LENGTH)):
        notes += _cut(row, column, length)
    notes += _cut(row, "event_type", TYPE_LENGTH)
    return row, "".join(f" ({note})" for note in notes)


def _cut(row: dict[str, Any], column: str, length: int) -> list[str]:
    value = _text(row[column])
    row[column] = None if value is None else value[:length]
    if value is None or len(value) <= length:
        return []
    return [f"{column} cut to {length} of its {len(value)} characters"]


def blocked_streams(conn: sa.Connection, consumer: str) -> dict[str, int]:
    """Each blocked stream's first open parked version: from there on, its events park
    (an event of another store's history blocks none, see :attr:`Parking.blocks`).
    One query per batch; cheap while nothing is parked (an index leads with consumer)."""
    rows = conn.execute(
        sa.select(parked_table.c.stream_id, sa.func.min(parked_table.c.stream_version))
        .where(
            parked_table.c.consumer == consumer,
            parked_table.c.state.in_(BLOCKING),
            parked_table.c.stream_version.is_not(None),
            parked_table.c.reason.not_like(f"{ORIGIN}:%"),
        )
        .group_by(parked_table.c.stream_id)
    )
    return {stream: int(version) for stream, version in rows}


def pinned_origins(conn: sa.Connection, consumer: str) -> dict[str, str]:
    """The store identity each stream category's events came from first."""
    rows = conn.execute(
        sa.select(origins_table.c.category, origins_table.c.origin).where(
            origins_table.c.consumer == consumer
        )
    )
    return {category: origin for category, origin in rows}


def pin_origins(conn: sa.Connection, consumer: str, pins: dict[str, str]) -> None:
    """Record the first origin seen of new categories (a consumer parks an event whose
    category is too long for its column; an origin too long, not a store's uuid, is
    kept cut, and events of that category then park as from another store)."""
    if pins:
        conn.execute(
            origins_table.insert(),
            [
                {"consumer": consumer, "category": c, "origin": str(_text(o))[:ORIGIN_LENGTH]}
                for c, o in pins.items()
            ],
        )


def clear_origins(conn: sa.Connection, consumer: str) -> None:
    """Forget the origins the consumer pinned (a rebuild: the first events it replays
    pin them again), so that after a deliberate reset of a store, replayed from its new
    topics, the new store's events are not parked as from another store."""
    conn.execute(origins_table.delete().where(origins_table.c.consumer == consumer))


def count_open(conn: sa.Connection, consumer: str) -> int:
    """How many of the consumer's events are parked now (retry requested included)."""
    return int(
        conn.scalar(
            sa.select(sa.func.count()).where(
                parked_table.c.consumer == consumer, parked_table.c.state.in_(OPEN)
            )
        )
        or 0
    )


def select(
    conn: sa.Connection,
    *,
    consumer: str | None = None,
    stream: str | None = None,
    states: Iterable[str] = OPEN,
    ids: Iterable[int] | None = None,
) -> list[ParkedEvent]:
    """Parked rows, in each stream's order (rows of messages never decoded, with no
    version, last on every database: SQLite would sort them first)."""
    query = sa.select(*(parked_table.c[f.name] for f in dataclasses.fields(ParkedEvent)))
    query = query.where(parked_table.c.state.in_(list(states)))
    if consumer is not None:
        query = query.where(parked_table.c.consumer == consumer)
    if stream is not None:
        query = query.where(parked_table.c.stream_id == stream)
    if ids is not None:
        query = query.where(parked_table.c.id.in_(list(ids)))
    version = parked_table.c.stream_version.asc().nulls_last()
    order = (parked_table.c.consumer, parked_table.c.stream_id, version)
    return [ParkedEvent(*row) for row in conn.execute(query.order_by(*order, parked_table.c.id))]


def request_retry(conn: sa.Connection, consumer: str | None, stream: str | None) -> int:
    """Mark the parked sequences (all, or a consumer's, or a stream's) for the running
    consumer to apply again; returns how many rows were marked."""
    return _resolve(conn, consumer, stream, None, {"state": RETRY})


def drop(
    conn: sa.Connection,
    consumer: str | None,
    stream: str | None,
    by: str,
    why: str,
    *,
    ids: Iterable[int] | None = None,
) -> int:
    """Give parked rows up (a consumer's, a stream's, or those with ``ids``), keeping
    them with who, why and when; returns how many. A reason is required."""
    if not why.strip():
        raise ValueError("a drop needs a reason")
    values = {"state": DROPPING, "resolved_at": datetime.now(UTC), "resolved_by": by}
    return _resolve(conn, consumer, stream, ids, values | {"resolution": why})


def _resolve(
    conn: sa.Connection,
    consumer: str | None,
    stream: str | None,
    ids: Iterable[int] | None,
    values: dict[str, Any],
) -> int:
    where: list[sa.ColumnElement[bool]] = [parked_table.c.state.in_(OPEN)]
    if consumer is not None:
        where.append(parked_table.c.consumer == consumer)
    if stream is not None:
        where.append(parked_table.c.stream_id == stream)
    if ids is not None:
        where.append(parked_table.c.id.in_(list(ids)))
    return conn.execute(parked_table.update().where(*where).values(**values)).rowcount


def retry_requested(conn: sa.Connection, consumer: str) -> list[str]:
    """The streams whose parked sequence the consumer is asked to apply again, or to
    pass a dropped event of over."""
    asked = parked_table.c.state.in_((RETRY, DROPPING))
    rows = conn.execute(
        sa.select(parked_table.c.stream_id)
        .where(parked_table.c.consumer == consumer, asked)
        .distinct()
    )
    return sorted(rows.scalars())


def sequence(conn: sa.Connection, consumer: str, stream: str) -> list[ParkedEvent]:
    """A stream's parked sequence: the rows it waits behind, in version order (those
    of messages never decoded last: a claimed stream id never blocks a stream)."""
    return select(conn, consumer=consumer, stream=stream, states=BLOCKING)


def unpark(conn: sa.Connection, row: int) -> bool:
    """A retry applies the row's event: it is no longer parked (the row is kept). False,
    and nothing changed, when the row is no longer to retry (an operator dropped it
    meanwhile): then the event must not be applied."""
    values = {"state": APPLIED, "resolved_at": datetime.now(UTC)}
    return _move(conn, row, RETRY, values)


def to_retry(conn: sa.Connection, row: int) -> bool:
    """Whether the row is still to retry (an operator may have dropped it since)."""
    state = conn.scalar(sa.select(parked_table.c.state).where(parked_table.c.id == row))
    return state == RETRY


def passed_over(conn: sa.Connection, row: int) -> None:
    """The consumer has passed a dropped event over: the drop is done."""
    _move(conn, row, DROPPING, {"state": DROPPED})


def failed_again(conn: sa.Connection, row: int, error: str | None) -> None:
    """A retry of the row's event failed: parked again, with one attempt more (unless
    an operator dropped it meanwhile: the drop stands)."""
    values = {"state": PARKED, "error": error, "attempts": parked_table.c.attempts + 1}
    _move(conn, row, RETRY, values)


def _move(conn: sa.Connection, row: int, expected: str, values: dict[str, Any]) -> bool:
    """Update the row if it is in the ``expected`` state; whether it was."""
    where = (parked_table.c.id == row, parked_table.c.state == expected)
    return bool(conn.execute(parked_table.update().where(*where).values(**values)).rowcount)


def reopen(conn: sa.Connection, consumer: str, stream: str) -> None:
    """Rows of a retried sequence left behind a failure go back to parked."""
    conn.execute(
        parked_table.update()
        .where(
            parked_table.c.consumer == consumer,
            parked_table.c.stream_id == stream,
            parked_table.c.state == RETRY,
        )
        .values(state=PARKED)
    )


def copy_from(conn: sa.Connection, source: str, consumer: str) -> None:
    """Add what ``consumer`` parked in ``source`` (a replay's shadow: an attached
    database or a schema, quoted as SQL wants it) that ``conn``'s database lacks, so
    that a swap loses none of the replay's parked events and keeps the live consumer's;
    and take the origins the replay pinned instead of the live ones, as its tracking
    replaces the live tracking (after a store's deliberate reset, the replay's first
    events pin the new store)."""
    create_tables(conn, parking)
    conn.execute(origins_table.delete().where(origins_table.c.consumer == consumer))
    for table, key in ((parked_table, "key"), (origins_table, "category")):
        columns = ", ".join(f'"{c.name}"' for c in table.c if c.name != "id")
        conn.execute(
            sa.text(
                f'INSERT INTO "{table.name}" ({columns}) SELECT {columns} '
                f'FROM {source}."{table.name}" AS s WHERE s.consumer = :c AND NOT EXISTS '
                f'(SELECT 1 FROM "{table.name}" AS l WHERE l.consumer = s.consumer '
                f'AND l."{key}" = s."{key}")'
            ),
            {"c": consumer},
        )
