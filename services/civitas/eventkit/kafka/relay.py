"""The relay: a service's event store is its outbox.

It tails the store from its stored checkpoint, publishes each batch to the
service's topic (key: stream id), waits until the broker acknowledged every
message, and only then moves the checkpoint. A crash between the two publishes
some events again at new offsets; consumers skip them by stream version. No
service ever writes to Kafka and to its store as two separate steps.

Every message carries the store's identity, and a relay refuses to start on a
topic whose messages came from another store (:mod:`.history`), or that differs
from its declaration (:class:`.topics.TopicMismatch`): neither mends itself, so
neither is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from ..metrics import EVENTS_PUBLISHED, RELAY_LAG, RELAY_POSITION
from ..records import RecordedEvent
from ..repository import is_snapshot
from ..store import EventStore
from .envelope import encode_event
from .history import ForeignHistory, check_history, owner_of, relay_checkpoint
from .security import PLAINTEXT, KafkaSecurity
from .topics import MAX_MESSAGE_BYTES, TopicMismatch, TopicSpec, ensure_topics

log = logging.getLogger(__name__)


def idempotent_producer(bootstrap: str, security: KafkaSecurity = PLAINTEXT) -> AIOKafkaProducer:
    """The relay's producer: idempotent, waits for all in-sync replicas, batches briefly.

    The relay is the hot path, so it drives aiokafka (the producer FastStream wraps)
    directly; consumers use FastStream's subscribers.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=MAX_MESSAGE_BYTES,
        client_id="civitas-relay",
        **security.aiokafka(),
    )


class Relay:
    """Publishes one event store to one topic, from a checkpoint kept in the store."""

    def __init__(
        self,
        store: EventStore,
        bootstrap: str,
        topic: TopicSpec,
        *,
        batch_size: int = 1000,
        window: int = 4,
        retry_delay: float = 1.0,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.security = security
        self.producer = idempotent_producer(bootstrap, security)
        self._stopped = False
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[bytes, int] = {}
        self._partition_count = 0
        self.topic = topic
        self.batch_size = batch_size
        # The series exists from the start: a relay that never gets to publish (the
        # broker unreachable from the first) reads 0, and its stall can be alerted on.
        EVENTS_PUBLISHED.labels(topic.name)
        self.window = window
        self.retry_delay = retry_delay
        self.checkpoint_name = relay_checkpoint(topic.name)
        self.identity = ""  # the store's, read at start

    async def start(self) -> None:
        """Refuse a topic that holds another store's events (:class:`ForeignHistory`),
        create the topic if it is missing (or refuse one that differs from its
        declaration), and connect the producer."""
        owner = await owner_of(self.store, self.topic.name)
        await check_history(self.bootstrap, self.topic.name, owner, self.security)
        self.identity = owner.identity
        await ensure_topics(self.bootstrap, [self.topic], self.security)
        if self._stopped:  # a stopped aiokafka producer never starts again
            self.producer = idempotent_producer(self.bootstrap, self.security)
            self._stopped = False
        await self.producer.start()

    async def stop(self) -> None:
        """Flush and disconnect the producer. The relay may be started again (its lease
        lost, then taken anew): it then connects a new producer."""
        await self.producer.stop()
        self._stopped = True

    async def run(self) -> None:
        """Relay until cancelled. Any failure (the broker not up yet, a lost store
        connection) is logged, and the relay starts over from its checkpoint after a
        pause; it stops only when the topic is not its to publish into."""
        started = False
        try:
            while True:
                try:
                    if not started:
                        await self.start()
                        started = True
                    await self._relay(follow=True)
                except (ForeignHistory, TopicMismatch) as refused:
                    log.error("the relay to %s refuses to start: %s", self.topic.name, refused)
                    raise
                except Exception as exc:
                    cause = exc.exceptions[0] if isinstance(exc, ExceptionGroup) else exc
                    log.warning(
                        "relay to %s failed (%r); resuming from the checkpoint",
                        self.topic.name,
                        cause,
                    )
                    await asyncio.sleep(self.retry_delay)
        finally:
            if started:
                await self.stop()

    async def drain(self) -> int:
        """Publish everything stored now (after :meth:`start`); returns the position reached."""
        await self._relay(follow=False)
        return await self.store.load_checkpoint(self.checkpoint_name)

    async def _relay(self, *, follow: bool) -> None:
        """Send batches while earlier ones wait for their acks (at most ``window`` in flight);
        the checkpoint follows the acks, in order."""
        after = await self.store.load_checkpoint(self.checkpoint_name)
        in_flight: asyncio.Queue[_Sent | None] = asyncio.Queue(maxsize=self.window)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._confirm_in_order(in_flight))
            async for batch in self._batches(after, follow):
                await in_flight.put(await self._send(batch))
            await in_flight.put(None)

    async def _batches(self, after: int, follow: bool) -> AsyncIterator[list[RecordedEvent]]:
        if follow:
            async for batch in self.store.subscribe(after=after, batch_size=self.batch_size):
                yield batch
            return
        while batch := await self.store.read_all(after=after, limit=self.batch_size):
            yield batch
            after = batch[-1].position

    async def _send(self, batch: list[RecordedEvent]) -> _Sent:
        """Queue a batch's messages, one record batch per partition; return their acks.

        The partition is the default partitioner's choice for the key (murmur2 of the
        stream id), so a stream always lands where a per-message send would put it.
        """
        partitions = sorted(await self.producer.partitions_for(self.topic.name))
        builders: dict[int, Any] = {}
        acks: list[asyncio.Future[Any]] = []
        count = 0
        for event in batch:
            if is_snapshot(event):
                continue  # snapshots only speed up loading; they are no contract
            key, value, headers = encode_event(event, self.identity)
            record = {
                "key": key,
                "value": value,
                "timestamp": None,
                "headers": [(name, text.encode()) for name, text in headers.items()],
            }
            partition = self._partition_of(key, partitions)
            builder = builders.get(partition)
            if builder is None or builder.append(**record) is None:
                if builder is not None:  # full: send it, start the next
                    acks.append(await self._send_batch(builder, partition))
                builder = builders[partition] = self.producer.create_batch()
                builder.append(**record)
            count += 1
        for partition, builder in builders.items():
            acks.append(await self._send_batch(builder, partition))
        return _Sent(acks, count, batch[-1].position)

    def _partition_of(self, key: bytes, partitions: list[int]) -> int:
        """The default partitioner's choice, remembered per stream (murmur2 is pure Python)."""
        if len(partitions) != self._partition_count:
            self._partitions.clear()
            self._partition_count = len(partitions)
        partition = self._partitions.get(key)
        if partition is None:
            if len(self._partitions) >= 100_000:
                self._partitions.clear()
            partition = self._partitions[key] = self._partitioner(key, partitions, partitions)
        return partition

    async def _send_batch(self, builder: Any, partition: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self.producer.send_batch(
            builder, self.topic.name, partition=partition
        )
        return future

    async def _confirm_in_order(self, in_flight: asyncio.Queue[_Sent | None]) -> None:
        while (sent := await in_flight.get()) is not None:
            await asyncio.gather(*sent.acks)  # every message acknowledged ...
            await self.store.save_checkpoint(self.checkpoint_name, sent.position)  # ... then on
            EVENTS_PUBLISHED.labels(self.topic.name).inc(sent.count)
            RELAY_POSITION.labels(self.topic.name).set(sent.position)
            head = await self.store.head_position()
            RELAY_LAG.labels(self.topic.name).set(max(0, head - sent.position))


@dataclass(frozen=True, slots=True)
class _Sent:
    acks: list[asyncio.Future[Any]]
    count: int
    position: int
