"""One history per topic: a relay publishes only into a topic its own store filled.

Stream ids are deterministic, so a store that was reset (or another deployment's
store) writes ``case-<id>`` at version 0 again. Published into a topic that still
holds the old store's events, an independent reader would see version 0 of a stream
arrive after its version 1, and a consumer that tracks versions would skip the new
history as already applied. So before it publishes, a relay reads the last event of
each partition of its topic and compares the store identity its envelope carries. It
reads back from the end past messages that are no envelopes (anyone who can write to
the topic can append one, to hide the history before it), at most :data:`LOOK_BACK`
of them: a partition whose last ones are all garbage is refused, not taken as ours.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from ..store import EventStore
from .envelope import UndecodableMessage, decode_message
from .security import PLAINTEXT, KafkaSecurity
from .topics import namespace_of

NAMESPACE_SETTING = "CIVITAS_KAFKA_NAMESPACE"


class ForeignHistory(RuntimeError):
    """A topic holds another store's events: publishing there would mix two histories."""

    def __init__(self, topic: str, found: str | None, ours: str, namespace: str) -> None:
        self.topic, self.found, self.ours, self.namespace = topic, found, ours, namespace
        theirs = f"store {found}" if found else "a store from before stores had identities"
        super().__init__(
            f"{topic} holds the events of another event store ({theirs}; this store is "
            f"{ours}), for instance one that was reset since: publishing would mix two "
            "histories under the same stream ids. Either publish to a new namespace "
            f"({NAMESPACE_SETTING}=<another name>), or delete the old topics: "
            f"civitas kafka delete-topics --namespace {namespace}"
        )


class UnreadableHistory(ForeignHistory):
    """A partition's last messages are none of them events: whose history the topic
    holds cannot be told, so it is not taken for this store's."""

    def __init__(self, topic: str, partition: int, read: int) -> None:
        self.topic, self.partition, self.namespace = topic, partition, namespace_of(topic)
        RuntimeError.__init__(
            self,
            f"{topic}[{partition}]: none of its last {read} messages is an event envelope, "
            "so whose events the topic holds cannot be told (messages written there can "
            "hide another store's history): this store does not publish into it. Read "
            "them, then delete the old topics (civitas kafka delete-topics --namespace "
            f"{self.namespace}) or publish to a new namespace ({NAMESPACE_SETTING}=<another name>)",
        )


def relay_checkpoint(topic: str) -> str:
    """The name of the checkpoint a relay keeps in its store: every event up to it is on
    ``topic``, acknowledged."""
    return f"relay:{topic}"


@dataclass(frozen=True, slots=True)
class Owner:
    """Who may publish into a topic: the store's identity, and whether it has published
    before (a relay checkpoint above 0): only then are messages without an identity,
    published before stores had one, taken as its own."""

    identity: str
    published_before: bool


async def owner_of(store: EventStore, topic: str) -> Owner:
    """``store`` as the would-be publisher into ``topic`` (its relay's checkpoint)."""
    published = await store.load_checkpoint(relay_checkpoint(topic))
    return Owner(await store.identity(), published_before=published > 0)


async def check_history(
    bootstrap: str, topic: str, owner: Owner, security: KafkaSecurity = PLAINTEXT
) -> None:
    """Raise :class:`ForeignHistory` unless every partition's last message came from
    ``owner`` (an empty or missing topic is anyone's)."""
    for found in await last_origins(bootstrap, topic, security):
        if found == owner.identity or (found is None and owner.published_before):
            continue
        raise ForeignHistory(topic, found, owner.identity, namespace_of(topic))


READ_WITHIN_MS = 10_000  # to read the last messages of a topic
LOOK_BACK = 100  # messages read back from a partition's end to find its last event


async def last_origins(
    bootstrap: str, topic: str, security: KafkaSecurity = PLAINTEXT
) -> list[str | None]:
    """The store identity of the last event of each non-empty partition of ``topic``
    (None for an envelope without one), read back past messages that are no envelopes;
    raises :class:`UnreadableHistory` when none of a partition's last
    :data:`LOOK_BACK` messages is one."""
    return await asyncio.to_thread(_last_origins, bootstrap, topic, security)


def _last_origins(bootstrap: str, topic: str, security: KafkaSecurity) -> list[str | None]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        allow_auto_create_topics=False,  # asking about a topic must not make it
        request_timeout_ms=READ_WITHIN_MS,
        **security.kafka_python(),
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        starts = consumer.beginning_offsets(partitions)
        ends = consumer.end_offsets(partitions)
        filled = [tp for tp in partitions if ends[tp] > starts[tp]]
        consumer.assign(filled)
        for tp in filled:
            consumer.seek(tp, max(starts[tp], ends[tp] - LOOK_BACK))
        return [_last_origin(tp, values) for tp, values in _tails(consumer, ends, filled).items()]
    finally:
        consumer.close()


def _tails(
    consumer: KafkaConsumer, ends: dict[Any, int], partitions: list[TopicPartition]
) -> dict[Any, list[bytes | None]]:
    """The values from where each partition was sought to its end as it was."""
    tails: dict[Any, list[bytes | None]] = {tp: [] for tp in partitions}
    deadline = time.monotonic() + READ_WITHIN_MS / 1000
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the last messages of {partitions[0].topic} did not arrive")
        for tp, records in consumer.poll(timeout_ms=500).items():
            tails[tp].extend(record.value for record in records if record.offset < ends[tp])
    return tails


def _last_origin(tp: TopicPartition, values: list[bytes | None]) -> str | None:
    for value in reversed(values):
        try:
            return decode_message(value).origin
        except UndecodableMessage:
            continue
    raise UnreadableHistory(tp.topic, tp.partition, len(values))
