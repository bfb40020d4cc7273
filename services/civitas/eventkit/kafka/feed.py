"""The Kafka feed: a FastStream batch subscriber with one consumer group per consumer.

A batch's offsets are committed only after ``handle`` returned, that is after the
consumer's read-model transaction committed; if ``handle`` raises (its database, not
its events: a runner parks the events it cannot apply, so a batch always completes),
the consumer rewinds and the batch comes again. A message that is not an event
envelope, and each event a consumer parks, go to the group's dead-letter topic with
the reason, and the consumer goes on. The lag is probed from the broker
(:meth:`KafkaFeed.behind`), not only after a batch: a group that does not advance shows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from ..metrics import CONSUMER_FAILURES, CONSUMER_LAG, DEAD_LETTERS
from ..parking import Parking, Undecodable, event_to_json
from ..projection import BatchHandler
from ..records import MAX_STREAM_ID_LENGTH, EventFilter, RecordedEvent
from .envelope import UndecodableMessage, decode_message
from .security import PLAINTEXT, KafkaSecurity
from .topics import dead_letter_spec, ensure_topics

log = logging.getLogger(__name__)
UndecodableHandler = Callable[[Undecodable], Awaitable[None]]

METADATA_MAX_AGE_MS = 2000  # how soon a consumer sees a topic created after it subscribed


class KafkaFeed:
    """Feeds a consumer from one or more events topics through its own consumer group.

    Where to start is the group's committed offsets (the earliest message for a new
    group), not the ``after`` position the runner passes: positions are per store,
    and a topic's partitions keep order per stream only.

    The consumer group is ``<namespace>.<group>`` and its dead-letter topic
    ``<namespace>.dlq.<group>``. A consumer never creates the topics it reads (their
    publishers do, as the catalog declares them): one subscribed before its topic
    exists finds it at the next metadata refresh, a few seconds later.

    Every message of the topics reaches the runner (``complete_streams``): the runner
    sees each stream's versions whole, and applies its type filter after checking them.
    """

    complete_streams = True

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        group: str,
        *,
        namespace: str,
        batch_size: int = 500,
        batch_timeout_ms: int = 20,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.topics = list(topics)
        self.group = f"{namespace}.{group}"
        self.batch_size = batch_size
        self.batch_timeout_ms = batch_timeout_ms
        self.dead_letters = dead_letter_spec(group, namespace)
        self._broker: KafkaBroker | None = None  # while running: publishes dead letters

    async def run(
        self,
        handle: BatchHandler,
        *,
        after: int = 0,
        filter: EventFilter | None = None,
        undecodable: UndecodableHandler | None = None,
    ) -> None:
        """Consume until cancelled. A message that is not an event goes to the dead-letter
        topic and, given ``undecodable``, is parked in the consumer's store too."""
        await ensure_topics(self.bootstrap, [self.dead_letters], self.security)
        broker = KafkaBroker(
            self.bootstrap,
            enable_idempotence=True,
            acks="all",
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
            allow_auto_create_topics=False,  # FastStream would make them: 1 partition
            logger=None,
            security=self.security.faststream(),
        )

        @broker.subscriber(
            *self.topics,
            group_id=self.group,
            batch=True,
            max_records=self.batch_size,
            batch_timeout_ms=self.batch_timeout_ms,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )
        async def consume(body: Any, message: KafkaMessage) -> None:
            records: tuple[ConsumerRecord[Any, Any], ...] = message.raw_message
            decoded = await self._decode(broker, records, undecodable)
            events = [e for e in decoded if _passes(e, filter)]
            if events:
                try:
                    await handle(events)
                except Exception:  # not the events (a runner parks those): its database
                    CONSUMER_FAILURES.labels(self.group, "nack").inc()  # redelivered
                    log.exception("%s failed on a batch; it will be delivered again", self.group)
                    raise

        async with broker:
            await broker.start()
            self._broker = broker
            try:
                await asyncio.Event().wait()
            finally:
                self._broker = None

    async def _decode(
        self,
        broker: KafkaBroker,
        records: Sequence[ConsumerRecord[Any, Any]],
        undecodable: UndecodableHandler | None,
    ) -> list[RecordedEvent]:
        events = []
        for record in records:
            try:
                events.append(decode_message(record.value))
            except UndecodableMessage as exc:
                await self._set_aside(broker, record, str(exc))
                if undecodable is not None:
                    await undecodable(
                        Undecodable(
                            f"{record.topic}[{record.partition}]@{record.offset}",
                            _claimed_stream(record.key),
                            record.value or b"",
                            str(exc),
                        )
                    )
        return events

    async def publish_parked(self, parked: list[tuple[RecordedEvent, Parking]]) -> None:
        """Publish events the consumer parked on its dead-letter topic, with the reason."""
        broker = self._broker
        if broker is None:
            return  # not consuming: the consumer's store keeps them
        for event, why in parked:
            await broker.publish(
                event_to_json(event),
                self.dead_letters.name,
                key=event.stream_id.encode(),
                headers={
                    "reason": why.reason,
                    "error": why.error or "",
                    "attempts": str(why.attempts),
                    "stream_id": event.stream_id,
                    "stream_version": str(event.stream_version),
                    "event_id": str(event.event_id),
                    "group": self.group,
                },
            )

    async def behind(
        self, *, after: int = 0, filter: EventFilter | None = None
    ) -> tuple[int, float]:
        """How far the group is behind, read from the broker whether batches come or not:
        the high watermarks minus its committed offsets (the earliest offsets where it
        has committed none), and the age of the oldest message it has not committed.
        Sets ``civitas_consumer_lag_messages`` per topic too. ``after`` and ``filter``
        are the store feed's business: a group's offsets say it all."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.security.aiokafka())
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **self.security.aiokafka()
        )
        await admin.start()
        await reader.start()
        try:
            return await self._behind(admin, reader)
        finally:
            await reader.stop()
            await admin.close()

    async def _behind(
        self, admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer
    ) -> tuple[int, float]:
        described = await admin.describe_topics()  # all: naming one could create it
        partitions = [
            TopicPartition(topic["topic"], partition["partition"])
            for topic in described
            if topic["topic"] in self.topics and not topic["error_code"]
            for partition in topic["partitions"]
        ]
        if not partitions:
            return 0, 0.0
        committed = await admin.list_consumer_group_offsets(self.group)
        ends = await reader.end_offsets(partitions)
        firsts = await reader.beginning_offsets(partitions)
        unread: dict[TopicPartition, int] = {}
        lag = dict.fromkeys(self.topics, 0)
        for tp in partitions:
            done = committed.get(tp)
            start = done.offset if done is not None and done.offset >= 0 else firsts[tp]
            lag[tp.topic] += max(0, ends[tp] - start)
            if ends[tp] > start:
                unread[tp] = start
        for topic, messages in lag.items():
            CONSUMER_LAG.labels(self.group, topic).set(messages)
        return sum(lag.values()), await _oldest_age(reader, unread)

    async def _set_aside(
        self, broker: KafkaBroker, record: ConsumerRecord[Any, Any], reason: str
    ) -> None:
        log.warning(
            "dead letter from %s[%s]@%s: %s", record.topic, record.partition, record.offset, reason
        )
        await broker.publish(
            record.value or b"",
            self.dead_letters.name,
            key=record.key,
            headers={
                "reason": reason,
                "source_topic": record.topic,
                "source_partition": str(record.partition),
                "source_offset": str(record.offset),
                "group": self.group,
            },
        )
        DEAD_LETTERS.labels(self.group, record.topic).inc()


async def _oldest_age(reader: AIOKafkaConsumer, unread: dict[TopicPartition, int]) -> float:
    """Seconds since the oldest of the first unread messages was written (0: none)."""
    if not unread:
        return 0.0
    reader.assign(list(unread))
    for tp, offset in unread.items():
        reader.seek(tp, offset)
    fetched = await reader.getmany(timeout_ms=2000, max_records=len(unread) * 10)
    firsts = [records[0].timestamp for records in fetched.values() if records]
    return max(0.0, time.time() - min(firsts) / 1000) if firsts else 0.0


def _passes(event: RecordedEvent, filter: EventFilter | None) -> bool:
    return filter is None or filter.matches(event)


def _claimed_stream(key: bytes | None) -> str:
    """The stream an undecodable message's key claims, cut to the store's bound on a
    stream id: the key is the sender's to choose, and a longer one would not fit where
    the consumer keeps the message."""
    return (key or b"").decode("utf-8", "replace")[:MAX_STREAM_ID_LENGTH]
