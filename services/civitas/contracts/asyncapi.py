"""The event contracts as an AsyncAPI 3.0 document (``make asyncapi`` writes docs/asyncapi.json).

Each service publishes every event of its store on its own topic as an
:class:`EventEnvelope`, keyed by stream id. Under each topic, one message per event
type, named as the type: the envelope whose ``data`` is that type's schema, one per
``schema_version`` ever published (from the recorded schema folders). Written here
rather than by FastStream, which gives a channel one payload, not one per event type.
A test fails when the committed document differs from what this module generates.
"""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import quote

from civitas import catalog
from civitas.eventkit.kafka.envelope import EventEnvelope
from civitas.eventkit.kafka.topics import events_topic
from civitas.eventkit.schemas import inlined

from .schemas import Schemas, publishers, recorded

ENVELOPE = "EventEnvelope"
HEADERS = {
    "type": "object",
    "properties": {
        name: {"type": "string"} for name in ("event_id", "type", "correlation_id", "causation_id")
    },
}


def asyncapi_document() -> str:
    """The AsyncAPI 3.0 document of every service's events topic, as JSON."""
    document: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {"title": "Civitas events", "version": "1.0.0"},
        "defaultContentType": "application/json",
        "servers": {
            "development": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "Local broker: `make kafka-up` (KRaft, one node)",
            }
        },
        "channels": {},
        "operations": {},
        "components": {"messages": {}, "schemas": {ENVELOPE: EventEnvelope.model_json_schema()}},
    }
    for service in publishers():
        _add_topic(document, service, recorded(service))
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _add_topic(document: dict[str, Any], service: str, schemas: Schemas) -> None:
    channel, topic = f"{service} events", events_topic(service)
    versions: dict[str, list[int]] = {}
    for event_type, version in sorted(schemas):
        versions.setdefault(event_type, []).append(version)
        body = {k: v for k, v in inlined(schemas[(event_type, version)]).items() if k[0] != "$"}
        document["components"]["schemas"][f"{event_type}.v{version}"] = body
    for event_type, published in versions.items():
        latest = schemas[(event_type, published[-1])]
        document["components"]["messages"][event_type] = _message(event_type, published, latest)
    document["channels"][channel] = {
        "address": topic,
        "bindings": {"kafka": {"bindingVersion": "0.5.0", "topic": topic}},
        "description": _topic_description(service),
        "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in versions},
        "servers": [{"$ref": "#/servers/development"}],
    }
    document["operations"][channel] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{quote(channel)}"},
        "messages": [{"$ref": f"#/channels/{quote(channel)}/messages/{t}"} for t in versions],
    }


def _message(event_type: str, versions: list[int], latest: dict[str, Any]) -> dict[str, Any]:
    """The envelope of one event type: ``type`` is its name, and ``data`` the schema of
    the envelope's ``schema_version``."""
    by_version = [
        {
            "properties": {
                "schema_version": {"const": version},
                "data": {"$ref": f"#/components/schemas/{event_type}.v{version}"},
            }
        }
        for version in versions
    ]
    message = {
        "name": event_type,
        "title": event_type,
        "contentType": "application/json",
        "correlationId": {"location": "$message.header#/correlation_id"},
        "headers": HEADERS,
        "payload": {
            "allOf": [
                {"$ref": f"#/components/schemas/{ENVELOPE}"},
                {"properties": {"type": {"const": event_type}}, "oneOf": by_version},
            ]
        },
    }
    if "description" in latest:
        message["summary"] = latest["description"]
    return message


def _topic_description(service: str) -> str:
    return (
        f"Every event of the {service} service ({catalog.spec(service).summary}), in store "
        "order per stream. Key: the stream id. Headers: event_id, type, correlation_id, "
        "causation_id. An event may arrive again after a relay restart: skip it by "
        "stream_version. The schemas of its events, every version, are also kept one file "
        f"each in services/civitas/contracts/events/{service}/ for a consumer to vendor."
    )


if __name__ == "__main__":
    sys.stdout.write(asyncapi_document())
