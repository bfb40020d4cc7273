"""The Kafka feed: a FastStream batch subscriber with one consumer group per consumer.

A batch's offsets are committed only after ``handle`` returned, that is after the
consumer's read-model transaction committed; if ``handle`` raises, the consumer
rewinds and the batch comes again. A message that is not an event envelope goes to
the group's dead-letter topic with the reason, and the consumer goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from ..metrics import CONSUMER_FAILURES, CONSUMER_LAG, DEAD_LETTERS
from ..projection import BatchHandler
from ..records import EventFilter, RecordedEvent
from .envelope import UndecodableMessage, decode_message
from .topics import dead_letter_spec, ensure_topics

log = logging.getLogger(__name__)

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
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        group: str,
        *,
        namespace: str,
        batch_size: int = 500,
        batch_timeout_ms: int = 20,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.group = f"{namespace}.{group}"
        self.batch_size = batch_size
        self.batch_timeout_ms = batch_timeout_ms
        self.dead_letters = dead_letter_spec(group, namespace)

    async def run(
        self, handle: BatchHandler, *, after: int = 0, filter: EventFilter | None = None
    ) -> None:
        """Consume until cancelled."""
        await ensure_topics(self.bootstrap, [self.dead_letters])
        broker = KafkaBroker(
            self.bootstrap,
            enable_idempotence=True,
            acks="all",
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
            logger=None,
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
            events = [e for e in await self._decode(broker, records) if _passes(e, filter)]
            if events:
                try:
                    await handle(events)
                except Exception:
                    CONSUMER_FAILURES.labels(self.group, "nack").inc()  # redelivered
                    log.exception("%s failed on a batch; it will be delivered again", self.group)
                    raise
            await self._record_lag(message.consumer)

        async with broker:
            await broker.start()
            await asyncio.Event().wait()

    async def _decode(
        self, broker: KafkaBroker, records: Sequence[ConsumerRecord[Any, Any]]
    ) -> list[RecordedEvent]:
        events = []
        for record in records:
            try:
                events.append(decode_message(record.value))
            except UndecodableMessage as exc:
                await self._set_aside(broker, record, str(exc))
        return events

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

    async def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        lag: dict[str, int] = {}
        for partition in consumer.assignment():
            high = consumer.highwater(partition)
            if high is None:
                continue
            position = await consumer.position(partition)
            lag[partition.topic] = lag.get(partition.topic, 0) + max(0, high - position)
        for topic, value in lag.items():
            CONSUMER_LAG.labels(self.group, topic).set(value)


def _passes(event: RecordedEvent, filter: EventFilter | None) -> bool:
    return filter is None or filter.matches(event)
