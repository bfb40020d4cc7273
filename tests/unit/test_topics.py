"""Every Kafka topic of a service, declared in one place from its catalog entry."""

from __future__ import annotations

import re

import pytest

from civitas import catalog
from civitas.chassis.settings import ServiceSettings
from civitas.chassis.topics import declared_topics, platform_topics
from civitas.cli import main
from civitas.eventkit.kafka.topics import FOREVER, TopicSpec, check_namespace

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


@pytest.mark.parametrize(
    "namespace", ["civitas.staging", "Civitas", "ns:x", "n" * 65, "a b", "ns/x"]
)
def test_a_namespace_that_is_not_1_to_64_of_a_z_0_9_dash_underscore_is_refused_naming_it(
    namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="1-64 lower-case letters, digits, '_' and '-'"):
        check_namespace(namespace)
    env = {"CIVITAS_AUTH_SECRET": "s" * 32, "CIVITAS_KAFKA_NAMESPACE": namespace}
    named = f"CIVITAS_KAFKA_NAMESPACE: .*not {re.escape(repr(namespace))}"
    with pytest.raises(ValueError, match=named):
        ServiceSettings.from_env("cases", env)
    for command in (["kafka", "delete-topics", "--yes"], ["relay", "--service", "cases"]):
        with pytest.raises(SystemExit):  # before anything is asked of a broker or a store
            main([*command, "--namespace", namespace])
        assert "--namespace: a Kafka namespace is 1-64" in capsys.readouterr().err


@pytest.mark.parametrize("namespace", ["civitas", "t0a1b2c3d4", "staging-2_b", "n" * 64])
def test_a_namespace_of_1_to_64_of_a_z_0_9_dash_underscore_is_taken(namespace: str) -> None:
    assert check_namespace(namespace) == namespace
    env = {"CIVITAS_AUTH_SECRET": "s" * 32, "CIVITAS_KAFKA_NAMESPACE": namespace}
    assert ServiceSettings.from_env("cases", env).kafka_namespace == namespace
