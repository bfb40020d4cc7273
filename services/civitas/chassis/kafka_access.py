"""Who may do what on Kafka: each service's principal and its ACLs, from the catalog.

A service authenticates as ``civitas-<service>`` (``_`` as ``-``: ``civitas-party-orgs``).
The rule, every resource named literally (no prefixes, so that only what the catalog
declares is granted, and a new topic needs a new declaration):

- a service that keeps events may write, read, create and describe its own events topic
  ``<ns>.<service>.events.v1`` and anchors topic ``<ns>.<service>.anchors.v1`` (read: its
  relay checks whose history the topic holds, its anchorer reads the last anchor);
- each of its consumer groups may be used as ``<ns>.<group>``, reads the events topic
  of the service it follows, and writes and creates its dead letters ``<ns>.dlq.<group>``.

Nothing else: no cluster right, no other topic, no other group. Whoever manages the
cluster (a super user: ``civitas-admin`` locally, Strimzi's operator in Kubernetes)
creates these ACLs: ``civitas kafka acls --apply``, or Strimzi ``KafkaUser`` resources
whose ``spec.authorization.acls`` :func:`strimzi_acls` writes.
"""

from __future__ import annotations

from typing import Any

from civitas import catalog
from civitas.eventkit.anchors import anchors_topic
from civitas.eventkit.kafka.acls import Grant
from civitas.eventkit.kafka.topics import dead_letter_topic, events_topic

from .catalog import ServiceSpec
from .topics import kafka_consumers

OWN_TOPIC = ("Write", "Read", "Create", "Describe", "DescribeConfigs")
DEAD_LETTERS = ("Write", "Create", "Describe", "DescribeConfigs")


def principal(service: str) -> str:
    """The Kafka user a service authenticates as: ``civitas-<service>``, ``_`` as ``-``."""
    return f"civitas-{service.replace('_', '-')}"


def kafka_groups(spec: ServiceSpec) -> list[str]:
    """Every consumer group the service may run on Kafka: its consumers of other
    services' events, and every process manager (``chassis.service.events_of`` feeds
    one from Kafka whenever Kafka is set, even on the service's own events)."""
    groups = kafka_consumers(spec)
    return groups + [m.name for m in spec.process_managers if m.name not in groups]


def grants(service: str, namespace: str) -> list[Grant]:
    """What ``service``'s principal may do in ``namespace``, by the rule above."""
    spec = catalog.spec(service)
    owned = [events_topic(service, namespace), anchors_topic(service, namespace)]
    found = [Grant("topic", topic, OWN_TOPIC) for topic in owned if spec.keeps_events]
    for group in kafka_groups(spec):
        found += [
            Grant("group", f"{namespace}.{group}", ("Read",)),
            Grant("topic", events_topic(_source(spec, group), namespace), ("Read", "Describe")),
            Grant("topic", dead_letter_topic(group, namespace), DEAD_LETTERS),
        ]
    return _merged(found)


def platform_grants(namespace: str) -> dict[str, list[Grant]]:
    """Every service's grants in ``namespace``, by principal."""
    return {principal(name): grants(name, namespace) for name in catalog.names()}


def strimzi_acls(granted: list[Grant]) -> list[dict[str, Any]]:
    """``granted`` as a Strimzi ``KafkaUser``'s ``spec.authorization.acls`` (type simple)."""
    return [
        {
            "resource": {"type": grant.resource, "name": grant.name, "patternType": "literal"},
            "operations": list(grant.operations),
            "host": "*",
        }
        for grant in granted
    ]


def _source(spec: ServiceSpec, group: str) -> str:
    readers = {p.name: p.source for p in spec.projections}
    readers |= {m.name: m.source for m in spec.process_managers}
    return readers[group]


def _merged(found: list[Grant]) -> list[Grant]:
    """One grant per resource (a service that follows its own events reads its own topic
    twice over), its operations in first-seen order."""
    merged: dict[tuple[str, str], list[str]] = {}
    for grant in found:
        operations = merged.setdefault((grant.resource, grant.name), [])
        operations += [op for op in grant.operations if op not in operations]
    return [Grant(kind, name, tuple(ops)) for (kind, name), ops in merged.items()]
