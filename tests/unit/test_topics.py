"""Every Kafka topic of a service, declared in one place from its catalog entry."""

from __future__ import annotations

from civitas import catalog
from civitas.chassis.topics import declared_topics, platform_topics
from civitas.eventkit.kafka.topics import FOREVER, TopicSpec

TWO_WEEKS_MS = 14 * 24 * 3600 * 1000


def test_a_service_has_its_events_and_anchors_topics_and_a_dead_letter_topic_per_consumer() -> None:
    assert declared_topics("cases", "ns") == [
        TopicSpec("ns.cases.events.v1", partitions=6, retention_ms=FOREVER),
        TopicSpec("ns.cases.anchors.v1", partitions=1, retention_ms=FOREVER),
        TopicSpec("ns.dlq.cases.funding_outcomes", partitions=1, retention_ms=TWO_WEEKS_MS),
    ]  # not cases_index: it reads cases' own store


def test_a_service_without_events_has_only_its_consumers_dead_letter_topics() -> None:
    assert [t.name for t in declared_topics("insights", "ns")] == [
        f"ns.dlq.{p.name}" for p in catalog.spec("insights").projections
    ]


def test_every_topic_of_the_platform_is_in_the_namespace_and_declared_once() -> None:
    names = [topic.name for topic in platform_topics("ns")]

    assert all(name.startswith("ns.") for name in names)
    assert len(names) == len(set(names))
    assert {f"ns.{s}.events.v1" for s in catalog.event_keepers()} <= set(names)
