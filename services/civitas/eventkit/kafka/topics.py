"""Topics are created explicitly, with their partitions and retention."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

FOREVER = -1
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # above the store's 1 MiB events plus their envelope


def events_topic(service: str, namespace: str = "civitas") -> str:
    """The topic a service publishes its events on: ``civitas.<service>.events.v1``
    (another namespace lets deployments, or test runs, share a cluster)."""
    return f"{namespace}.{service}.events.v1"


def dead_letter_topic(group: str, namespace: str) -> str:
    """Where a consumer group sets aside the messages it cannot decode:
    ``<namespace>.dlq.<group>``, in the namespace of the topics it reads."""
    return f"{namespace}.dlq.{group}"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create: events topics keep everything by default (they can be replayed)."""

    name: str
    partitions: int = 6
    retention_ms: int = FOREVER
    replication_factor: int = 1


DEAD_LETTER_RETENTION_MS = 14 * 24 * 3600 * 1000


def dead_letter_spec(group: str, namespace: str) -> TopicSpec:
    """A consumer group's dead-letter topic as declared: one partition, kept two weeks."""
    return TopicSpec(
        dead_letter_topic(group, namespace), partitions=1, retention_ms=DEAD_LETTER_RETENTION_MS
    )


def _create(bootstrap: str, specs: Sequence[TopicSpec]) -> None:
    admin = KafkaAdminClient(  # bounded waits: the caller retries, a thread must not hang
        bootstrap_servers=bootstrap,
        client_id="civitas-admin",
        bootstrap_timeout_ms=5000,
        request_timeout_ms=10000,
    )
    try:
        existing = set(admin.list_topics())
        for spec in specs:
            if spec.name in existing:
                continue
            topic = NewTopic(
                spec.name,
                spec.partitions,
                spec.replication_factor,
                topic_configs={
                    "retention.ms": str(spec.retention_ms),
                    "max.message.bytes": str(MAX_MESSAGE_BYTES),
                },
            )
            with contextlib.suppress(TopicAlreadyExistsError):  # made by another meanwhile
                admin.create_topics([topic])
    finally:
        admin.close()


async def ensure_topics(bootstrap: str, specs: Sequence[TopicSpec]) -> None:
    """Create the topics that do not exist yet (kafka-python's admin, on a thread)."""
    await asyncio.to_thread(_create, bootstrap, specs)
