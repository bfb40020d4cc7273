"""The event contracts as an AsyncAPI document (``make asyncapi`` writes docs/asyncapi.json).

Each service publishes every event of its store on its own topic as an
:class:`EventEnvelope`, keyed by stream id. A test fails when the committed
document differs from what this module generates.
"""

from __future__ import annotations

import json
import sys

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from civitas import catalog

from .envelope import EventEnvelope
from .topics import events_topic

# Every service that keeps events publishes them on its topic (its spec's summary).
SERVICES = {spec.name: spec.summary for spec in catalog.SERVICES if spec.keeps_events}


def asyncapi_document() -> str:
    """The AsyncAPI 3.0 document of every service's events topic, as JSON."""
    broker = KafkaBroker(
        "127.0.0.1:9092", description="Local broker: `make kafka-up` (KRaft, one node)"
    )
    for service, what in sorted(SERVICES.items()):
        broker.publisher(
            events_topic(service),
            title=f"{service} events",
            description=(
                f"Every event of the {service} service ({what}), in store order per stream. "
                "Key: the stream id. Headers: event_id, type, correlation_id, causation_id. "
                "An event may arrive again after a relay restart: skip it by stream_version."
            ),
            schema=EventEnvelope,
        )
    spec = AsyncAPI(broker, title="Civitas events", version="1.0.0", schema_version="3.0.0")
    document = json.loads(spec.to_specification().to_json())
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(asyncapi_document())
