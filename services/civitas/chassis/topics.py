"""Every Kafka topic of a service, as its catalog entry declares it, in one place.

A service that keeps events has its events topic (the partitions and retention its
:class:`~civitas.chassis.catalog.ServiceSpec` declares) and its anchors topic; each
of its consumers fed from Kafka (a projection or process manager reading another
service's events) has a dead-letter topic. Their publishers (the relay, the
anchorer, the consumer for its dead letters) create them from here, whatever
starts first; the broker never creates one on its own (auto-creation is off) and a
consumer never does.
"""

from __future__ import annotations

from civitas import catalog
from civitas.eventkit.anchors import anchors_topic
from civitas.eventkit.kafka.topics import FOREVER, TopicSpec, dead_letter_spec, events_topic

from .catalog import ServiceSpec

ANCHOR_PARTITIONS = 1  # one service's anchors, in order


def events_spec(service: str, namespace: str) -> TopicSpec:
    """The service's events topic, with its declared partitions and retention."""
    declared = catalog.spec(service).events
    return TopicSpec(
        events_topic(service, namespace),
        partitions=declared.partitions,
        retention_ms=declared.retention_ms,
    )


def anchors_spec(service: str, namespace: str) -> TopicSpec:
    """Where the service publishes the anchors of its ledger: kept for ever."""
    return TopicSpec(
        anchors_topic(service, namespace), partitions=ANCHOR_PARTITIONS, retention_ms=FOREVER
    )


def kafka_consumers(spec: ServiceSpec) -> list[str]:
    """The consumer groups the service runs on Kafka: its projections and process
    managers that read another service's events (its own it reads from its store)."""
    readers = [(p.name, p.source) for p in spec.projections]
    readers += [(m.name, m.source) for m in spec.process_managers]
    return [name for name, source in readers if source != spec.name]


def declared_topics(service: str, namespace: str) -> list[TopicSpec]:
    """Every topic of ``service`` in ``namespace``, as declared."""
    spec = catalog.spec(service)
    topics = [events_spec(service, namespace), anchors_spec(service, namespace)]
    owned = topics if spec.keeps_events else []
    return owned + [dead_letter_spec(group, namespace) for group in kafka_consumers(spec)]


def platform_topics(namespace: str) -> list[TopicSpec]:
    """Every topic of every service in ``namespace``, as declared."""
    return [topic for name in catalog.names() for topic in declared_topics(name, namespace)]
