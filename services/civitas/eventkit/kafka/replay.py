"""A topic read once from its beginning to where it ended when the reading began.

For rebuilding a read model from Kafka: it offers the catch-up interface
(``read`` until empty) that ``ProjectionRunner.rebuild`` uses, so the projection
code does not know it reads Kafka. Per-stream order holds (messages are keyed by
stream); a duplicate published by a restarted relay is passed over by the
runner's per-stream versions.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ..records import EventFilter, RecordedEvent
from .envelope import UndecodableMessage, decode_message
from .security import PLAINTEXT, KafkaSecurity


class KafkaReplayFeed:
    """Reads ``topics`` from the beginning up to their end offsets at the first read."""

    complete_streams = True  # every message of the topics: the runner sees whole streams

    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        batch_size: int = 1000,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.topics = topics
        self.batch_size = batch_size
        self.total = 0  # messages to read, known after the first read
        self.undecodable = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._ends: dict[TopicPartition, int] = {}

    async def read(
        self, *, after: int, filter: EventFilter | None, limit: int | None = None
    ) -> list[RecordedEvent]:
        """The next batch; empty once every partition reached its end offset."""
        consumer = await self._start()
        while self._ends:
            batches = await consumer.getmany(
                *self._ends, timeout_ms=1000, max_records=limit or self.batch_size
            )
            events = []
            for partition, records in batches.items():
                for record in records:
                    if record.offset >= self._ends.get(partition, 0):
                        continue
                    try:
                        event = decode_message(record.value)
                    except UndecodableMessage:
                        self.undecodable += 1
                        continue
                    if filter is None or filter.matches(event):
                        events.append(event)
            for partition in list(self._ends):
                if await consumer.position(partition) >= self._ends[partition]:
                    del self._ends[partition]
            if events:
                return events
        await self.close()
        return []

    async def run(self, handle: object, *, after: int, filter: EventFilter | None) -> None:
        raise NotImplementedError("a replay feed is read until it has caught up")

    async def head(self) -> int:
        return 0

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _start(self) -> AIOKafkaConsumer:
        if self._consumer is not None:
            return self._consumer
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            **self.security.aiokafka(),
        )
        await consumer.start()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.security.aiokafka())
        await admin.start()
        try:
            described = await admin.describe_topics(self.topics)
        finally:
            await admin.close()
        partitions = [
            TopicPartition(topic["topic"], p["partition"])
            for topic in described
            for p in topic["partitions"]
        ]
        if not partitions:
            await consumer.stop()
            raise ValueError(f"no such topic: {', '.join(self.topics)} (check the namespace)")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        self._ends = {tp: end for tp, end in ends.items() if end > starts[tp]}
        self.total = sum(ends[tp] - starts[tp] for tp in partitions)
        self._consumer = consumer
        return consumer
