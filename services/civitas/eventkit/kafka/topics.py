"""Topics are created explicitly, with their partitions and retention."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from .security import PLAINTEXT, KafkaSecurity

FOREVER = -1
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # above the store's 1 MiB events plus their envelope


def events_topic(service: str, namespace: str = "civitas") -> str:
    """The topic a service publishes its events on: ``civitas.<service>.events.v1``
    (another namespace lets deployments, or test runs, share a cluster)."""
    return f"{namespace}.{service}.events.v1"


_NAMESPACE = re.compile(r"[a-z0-9_-]{1,64}")


def check_namespace(namespace: str) -> str:
    """``namespace`` if it can name a namespace: 1-64 of ``a-z0-9_-``. No dot, so that
    no namespace's topics start with another's name and a dot (with ``civitas.staging``
    allowed, deleting namespace ``civitas`` would take staging's topics too)."""
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(
            f"a Kafka namespace is 1-64 lower-case letters, digits, '_' and '-', "
            f"not {namespace[:100]!r}"
        )
    return namespace


def namespace_of(topic: str) -> str:
    """The namespace of a Civitas topic: every one is named ``<namespace>.…``."""
    return topic.partition(".")[0]


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


class TopicMismatch(RuntimeError):
    """An existing topic differs from its declaration. Partitions are never added to
    make it fit: that would move keys to other partitions and break per-stream order."""

    def __init__(self, topic: str, what: str, declared: int, actual: int | str) -> None:
        self.topic, self.what, self.declared, self.actual = topic, what, declared, actual
        super().__init__(
            f"topic {topic} has {what} {actual}, but {declared} is declared: delete the topic "
            "(civitas kafka delete-topics) or use another namespace, and let its publisher "
            "create it as declared"
        )


@contextlib.contextmanager
def _admin(bootstrap: str, security: KafkaSecurity) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(  # bounded waits: the caller retries, a thread must not hang
        bootstrap_servers=bootstrap,
        client_id="civitas-admin",
        bootstrap_timeout_ms=5000,
        request_timeout_ms=10000,
        **security.kafka_python(),
    )
    try:
        yield admin
    finally:
        admin.close()


def _new_topic(spec: TopicSpec) -> NewTopic:
    return NewTopic(
        spec.name,
        spec.partitions,
        spec.replication_factor,
        topic_configs={
            "retention.ms": str(spec.retention_ms),
            "max.message.bytes": str(MAX_MESSAGE_BYTES),
        },
    )


def _check(admin: KafkaAdminClient, specs: Sequence[TopicSpec]) -> None:
    """Raise :class:`TopicMismatch` for the first existing topic that has fewer
    partitions, or another retention, than declared."""
    if not specs:
        return
    names = [spec.name for spec in specs]
    partitions = _partitions(admin, names)
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, n, configs=["retention.ms"]) for n in names
    ]
    configs = admin.describe_configs(resources)["topic"]
    for spec in specs:
        actual = partitions[spec.name]
        if actual < spec.partitions:
            raise TopicMismatch(spec.name, "partitions", spec.partitions, actual)
        kept = configs[spec.name].get("retention.ms")  # none: made without one
        retention = int(kept["value"]) if kept else "the broker's default"
        if retention != spec.retention_ms:
            raise TopicMismatch(spec.name, "retention.ms", spec.retention_ms, retention)


def _partitions(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Each topic's partition count, once the broker knows them all (a topic made a
    moment ago by another publisher can show none yet)."""
    for _ in range(50):
        counts = {d["name"]: len(d["partitions"]) for d in admin.describe_topics(names)}
        if all(counts.values()):
            break
        time.sleep(0.1)
    return counts


def _ensure(
    bootstrap: str, specs: Sequence[TopicSpec], create: bool, security: KafkaSecurity
) -> list[str]:
    with _admin(bootstrap, security) as admin:
        existing = set(admin.list_topics())
        _check(admin, [spec for spec in specs if spec.name in existing])
        missing = [spec for spec in specs if spec.name not in existing]
        raced = []
        for spec in missing if create else ():
            try:
                admin.create_topics([_new_topic(spec)])
            except TopicAlreadyExistsError:  # made by another meanwhile: checked too
                raced.append(spec)
        _check(admin, raced)
        return [spec.name for spec in missing]


async def ensure_topics(
    bootstrap: str, specs: Sequence[TopicSpec], security: KafkaSecurity = PLAINTEXT
) -> None:
    """Create the declared topics that do not exist yet (a publisher's duty: consumers
    never create topics), and raise :class:`TopicMismatch` for one that exists but
    has fewer partitions or another retention than declared."""
    await asyncio.to_thread(_ensure, bootstrap, specs, True, security)


async def check_topics(
    bootstrap: str, specs: Sequence[TopicSpec], security: KafkaSecurity = PLAINTEXT
) -> list[str]:
    """Raise :class:`TopicMismatch` as :func:`ensure_topics` would, creating nothing;
    return the names of the declared topics that do not exist yet."""
    return await asyncio.to_thread(_ensure, bootstrap, specs, False, security)


def _namespace_topics(bootstrap: str, namespace: str, security: KafkaSecurity) -> list[str]:
    with _admin(bootstrap, security) as admin:
        return sorted(n for n in admin.list_topics() if n.startswith(f"{namespace}."))


def _delete(bootstrap: str, names: Sequence[str], security: KafkaSecurity) -> None:
    with _admin(bootstrap, security) as admin:
        admin.delete_topics(list(names))


async def namespace_topics(
    bootstrap: str, namespace: str, security: KafkaSecurity = PLAINTEXT
) -> list[str]:
    """Every topic of ``namespace`` on the broker that ``security``'s principal may see,
    sorted."""
    return await asyncio.to_thread(
        _namespace_topics, bootstrap, check_namespace(namespace), security
    )


async def delete_topics(
    bootstrap: str, names: Sequence[str], security: KafkaSecurity = PLAINTEXT
) -> None:
    """Delete the named topics, and every message in them."""
    if names:
        await asyncio.to_thread(_delete, bootstrap, names, security)
