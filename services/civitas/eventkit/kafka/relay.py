"""The relay: a service's event store is its outbox.

It tails the store from its stored checkpoint, publishes each batch to the
service's topic (key: stream id), waits until the broker acknowledged every
message, and only then moves the checkpoint. A crash between the two publishes
some events again at new offsets; consumers skip them by stream version. No
service ever writes to Kafka and to its store as two separate steps.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from kafka.errors import KafkaError as AdminError

from ..metrics import EVENTS_PUBLISHED, RELAY_LAG, RELAY_POSITION
from ..records import RecordedEvent
from ..store import EventStore
from .envelope import encode_event
from .topics import TopicSpec, ensure_topics

log = logging.getLogger(__name__)


def producer_broker(bootstrap: str, **options: object) -> KafkaBroker:
    """A FastStream broker whose producer is idempotent and waits for all replicas."""
    return KafkaBroker(
        bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=512 * 1024,
        client_id="civitas-relay",
        logger=None,
        **options,  # type: ignore[arg-type]
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
        retry_delay: float = 1.0,
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.broker = producer_broker(bootstrap)
        self.topic = topic
        self.batch_size = batch_size
        self.retry_delay = retry_delay
        self.checkpoint_name = f"relay:{topic.name}"

    async def start(self) -> None:
        """Create the topic if it is missing and connect the producer."""
        await ensure_topics(self.bootstrap, [self.topic])
        await self.broker.start()

    async def stop(self) -> None:
        """Flush and disconnect the producer."""
        await self.broker.stop()

    async def run(self) -> None:
        """Relay until cancelled; a broker failure makes it start over from the checkpoint."""
        await self.start()
        try:
            while True:
                try:
                    after = await self.store.load_checkpoint(self.checkpoint_name)
                    async for batch in self.store.subscribe(
                        after=after, batch_size=self.batch_size
                    ):
                        await self._publish(batch)
                except (OSError, KafkaError, AdminError) as exc:
                    log.warning(
                        "relay to %s failed (%r); retrying from the checkpoint",
                        self.topic.name,
                        exc,
                    )
                    await asyncio.sleep(self.retry_delay)
        finally:
            await self.stop()

    async def drain(self) -> int:
        """Publish everything stored now (after :meth:`start`); returns the position reached."""
        after = await self.store.load_checkpoint(self.checkpoint_name)
        while batch := await self.store.read_all(after=after, limit=self.batch_size):
            await self._publish(batch)
            after = batch[-1].position
        return after

    async def _publish(self, batch: list[RecordedEvent]) -> None:
        pending = []
        for event in batch:
            if event.category.endswith("_snapshot"):
                continue  # snapshots only speed up loading; they are no contract
            key, value, headers = encode_event(event)
            pending.append(
                await self.broker.publish(
                    value,
                    self.topic.name,
                    key=key,
                    headers=headers,
                    correlation_id=event.correlation_id or str(event.event_id),
                    no_confirm=True,
                )
            )
        await asyncio.gather(*pending)  # every message acknowledged ...
        position = batch[-1].position
        await self.store.save_checkpoint(self.checkpoint_name, position)  # ... then move on
        EVENTS_PUBLISHED.labels(self.topic.name).inc(len(pending))
        RELAY_POSITION.labels(self.topic.name).set(position)
        RELAY_LAG.labels(self.topic.name).set(max(0, await self.store.head_position() - position))
