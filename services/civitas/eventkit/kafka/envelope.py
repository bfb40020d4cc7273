"""The message contract: every event goes to Kafka as one JSON envelope.

Key: the stream id (so one stream's events keep their order in one partition).
Headers: event id, type, correlation id, causation id, and the W3C ``traceparent``
and ``tracestate`` of the append (for routing and tracing without parsing the value).

Anyone who can write to a topic can put anything on it, so decoding holds a message to
the rules the store holds an append to (stream id, type) and every string to a bound
(metadata to what the gRPC edge takes): a message over a bound is undecodable, named by
its field, and is parked as such, never half-written into a consumer's tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from ..records import (
    MAX_EVENT_TYPE_LENGTH,
    MAX_METADATA_LENGTH,
    MAX_STREAM_ID_LENGTH,
    RecordedEvent,
    check_event_type,
    split_stream_id,
)

MAX_STORE_LENGTH = 64
"""A store's identity is a UUID (36 characters)."""
MAX_TRACE_ENTRIES = 8
MAX_TRACE_KEY_LENGTH = 64
MAX_TRACE_VALUE_LENGTH = 512
"""W3C ``tracestate`` is at most 512 characters; ``traceparent`` 55."""

MetadataText = Annotated[str, StringConstraints(max_length=MAX_METADATA_LENGTH)]
TraceKey = Annotated[str, StringConstraints(max_length=MAX_TRACE_KEY_LENGTH)]
TraceValue = Annotated[str, StringConstraints(max_length=MAX_TRACE_VALUE_LENGTH)]


class EventEnvelope(BaseModel):
    """One stored event as published on a service's events topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    stream_id: str = Field(
        max_length=MAX_STREAM_ID_LENGTH, description="category-id; also the message key"
    )
    stream_version: int = Field(ge=0, description="revision of the event in its stream")
    position: int = Field(ge=1, description="global position in the service's event store")
    type: str = Field(max_length=MAX_EVENT_TYPE_LENGTH)
    schema_version: int = Field(ge=1)
    occurred_at: datetime
    actor: MetadataText | None
    correlation_id: MetadataText | None
    causation_id: MetadataText | None
    data: dict[str, Any]
    hash: str = Field(
        pattern="^[0-9a-f]{64}$",
        description="hex SHA-256, chained to the stream's previous event",
    )
    store: str | None = Field(
        default=None,
        max_length=MAX_STORE_LENGTH,
        description="identity of the event store the event was published from (one topic "
        "holds one store's history: a reset store's events are told from the old ones); "
        "always set, absent only on messages published before stores had identities",
    )
    trace_context: dict[TraceKey, TraceValue] | None = Field(
        default=None,
        max_length=MAX_TRACE_ENTRIES,
        description="W3C traceparent (and tracestate) of the span that appended the event, "
        "also sent as headers: a consumer's span joins the trace of the command that "
        "caused the event",
    )

    @field_validator("stream_id")
    @classmethod
    def _stream_id(cls, stream_id: str) -> str:
        split_stream_id(stream_id)  # the store's rule: an InvalidStreamName is a ValueError
        return stream_id

    @field_validator("type")
    @classmethod
    def _type(cls, event_type: str) -> str:
        return check_event_type(event_type)


class UndecodableMessage(ValueError):
    """A message on an events topic that is not a valid envelope."""


def encode_event(event: RecordedEvent, store: str) -> tuple[bytes, bytes, dict[str, str]]:
    """Key, value and headers of the message that carries ``event`` from the store
    whose identity is ``store``."""
    value = orjson.dumps(  # transport only: the hashed canonical form is the store's
        {
            "event_id": str(event.event_id),
            "stream_id": event.stream_id,
            "stream_version": event.stream_version,
            "position": event.position,
            "type": event.type,
            "schema_version": event.schema_version,
            "occurred_at": event.occurred_at.isoformat(),
            "actor": event.actor,
            "correlation_id": event.correlation_id,
            "causation_id": event.causation_id,
            "data": event.data,
            "hash": event.hash.hex(),
            "trace_context": event.trace_context,
            "store": store,
        }
    )
    headers = {"event_id": str(event.event_id), "type": event.type}
    if event.correlation_id:
        headers["correlation_id"] = event.correlation_id
    if event.causation_id:
        headers["causation_id"] = event.causation_id
    headers.update(event.trace_context or {})  # traceparent, tracestate: W3C's own names
    return event.stream_id.encode(), value, headers


def decode_message(value: bytes | None) -> RecordedEvent:
    """The event a message carries; raises :class:`UndecodableMessage` with the reason."""
    if value is None:
        raise UndecodableMessage("the message has no value")
    try:
        envelope = EventEnvelope.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "message"
        raise UndecodableMessage(f"not an event envelope: {where}: {first['msg']}") from None
    return RecordedEvent(
        envelope.event_id,
        envelope.stream_id,
        envelope.stream_version,
        envelope.position,
        envelope.type,
        envelope.schema_version,
        envelope.occurred_at,
        envelope.actor,
        envelope.correlation_id,
        envelope.causation_id,
        envelope.data,
        bytes.fromhex(envelope.hash),
        trace_context=envelope.trace_context,
        origin=envelope.store,
    )
