"""The published event contracts stay in step with the code."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from civitas.contracts.asyncapi import asyncapi_document
from civitas.eventkit import RecordedEvent
from civitas.eventkit.kafka import decode_message, encode_event
from civitas.eventkit.kafka.envelope import UndecodableMessage

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_the_committed_asyncapi_document_is_current() -> None:
    assert DOCUMENT.read_text() == asyncapi_document(), "stale: run `make asyncapi` and commit"


def test_every_service_topic_is_documented_with_the_envelope() -> None:
    document = json.loads(DOCUMENT.read_text())
    addresses = {channel["address"] for channel in document["channels"].values()}

    assert addresses == {
        f"civitas.{s}.events.v1" for s in ("party_orgs", "cases", "volunteers", "funds")
    }
    assert "EventEnvelope" in json.dumps(document["components"]["schemas"])


def test_an_event_survives_the_trip_through_a_message() -> None:
    event = RecordedEvent(
        uuid4(),
        "case-9",
        3,
        120,
        "CaseDispatched",
        2,
        datetime(2026, 5, 1, 9, tzinfo=UTC),
        "staff-2",
        "corr-9",
        "cmd-9",
        {"unit": "QH-03-07", "note": "转街道"},
        bytes(range(32)),
    )

    store = str(uuid4())

    key, value, headers = encode_event(event, store)

    assert key == b"case-9"
    assert headers == {
        "event_id": str(event.event_id),
        "type": "CaseDispatched",
        "correlation_id": "corr-9",
        "causation_id": "cmd-9",
    }
    assert decode_message(value) == dataclasses.replace(event, origin=store)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "no value"),
        (b"\xff\xfe", "not an event envelope"),
        (b"[1, 2]", "not an event envelope"),
        (b'{"event_id": "x"}', "event_id"),
    ],
)
def test_a_message_that_is_no_envelope_is_refused_with_the_reason(
    value: bytes | None, reason: str
) -> None:
    with pytest.raises(UndecodableMessage, match=reason):
        decode_message(value)


def _envelope(**fields: object) -> bytes:
    event = RecordedEvent(
        uuid4(),
        "case-9",
        0,
        1,
        "CaseOpened",
        1,
        datetime(2026, 5, 1, tzinfo=UTC),
        "staff-2",
        "corr-9",
        None,
        {},
        bytes(32),
    )
    _, value, _ = encode_event(event, str(uuid4()))
    return json.dumps(json.loads(value) | fields).encode()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"stream_id": "case-" + "9" * 300}, "stream_id: String should have at most 255"),
        ({"stream_id": "Case 9"}, "stream_id: .* is not 'category-id'"),
        ({"type": "9Opened"}, "type: .* must start with a letter"),
        ({"type": "C" * 201}, "type: String should have at most 200"),
        ({"correlation_id": "c" * 65}, "correlation_id: String should have at most 64"),
        ({"causation_id": "c" * 65}, "causation_id: String should have at most 64"),
        ({"actor": "a" * 65}, "actor: String should have at most 64"),
        ({"store": "s" * 65}, "store: String should have at most 64"),
        ({"hash": "not hex"}, "hash: String should match pattern"),
        ({"trace_context": {"tracestate": "t" * 513}}, "trace_context.tracestate: String"),
        ({"trace_context": {f"k{n}": "v" for n in range(9)}}, "trace_context: Dictionary"),
    ],
)
def test_an_envelope_over_a_bound_of_the_store_or_the_edge_is_undecodable_naming_the_field(
    fields: dict[str, object], reason: str
) -> None:
    assert decode_message(_envelope()).stream_id == "case-9"  # the same envelope, in bounds

    with pytest.raises(UndecodableMessage, match=f"not an event envelope: {reason}"):
        decode_message(_envelope(**fields))
