"""Helpers for tests of consumers: waiting, lost checkpoints, redelivery over Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import sqlalchemy as sa

from civitas.eventkit import EventFilter, EventStore
from civitas.eventkit.process import ProcessManagerRunner
from civitas.eventkit.projection import streams_table


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, seconds: float = 10, poll: float = 0.05
) -> None:
    """Wait until ``check`` says yes; fail naming ``what`` after ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(poll)


async def handled_all(runner: ProcessManagerRunner, store: EventStore, seconds: float = 30) -> None:
    """Wait until a process manager has handled every event of ``store`` it reads."""
    mine = await store.read_all(limit=10_000_000, filter=runner.filter)
    last = mine[-1].position if mine else 0

    async def there() -> bool:
        return await runner.position() >= last

    await eventually(there, f"{runner.name} to handle every event", seconds)


async def relayed(store: EventStore, service: str, namespace: str, seconds: float = 60) -> None:
    """Wait until the service's relay has published every event of ``store`` now."""
    from civitas.eventkit.kafka import events_topic
    from civitas.eventkit.kafka.history import relay_checkpoint

    head = await store.head_position()
    checkpoint = relay_checkpoint(events_topic(service, namespace))

    async def there() -> bool:
        return await store.load_checkpoint(checkpoint) >= head

    await eventually(there, f"{service}'s relay to publish up to {head}", seconds, poll=0.1)


def forget_progress(runner: ProcessManagerRunner) -> None:
    """Make a process manager see every event again, as after a lost checkpoint."""
    with runner.engine.begin() as conn:
        for table in ("projection_positions", "projection_streams"):
            conn.execute(
                sa.text(f"DELETE FROM {table} WHERE projection = :n"), {"n": runner.manager.name}
            )


async def publish_again(store: EventStore, service: str, bootstrap: str, namespace: str) -> None:
    """Every event of ``store`` on the service's topic a second time, at new offsets, as
    a relay that lost its checkpoint publishes them."""
    from civitas.eventkit.kafka import Relay, TopicSpec, events_topic

    relay = Relay(store, bootstrap, TopicSpec(events_topic(service, namespace), partitions=6))
    await relay.start()
    await store.save_checkpoint(relay.checkpoint_name, 0)
    await relay.drain()
    await relay.stop()


async def consumed(bootstrap: str, namespace: str, seconds: float = 60) -> None:
    """Wait until every consumer group of ``namespace`` has committed, on each partition
    it reads, the offset that partition ends at now: all that is on the topics has been
    handled."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        groups = [
            g[0] for g in await admin.list_consumer_groups() if g[0].startswith(f"{namespace}.")
        ]
        assert groups, f"no consumer group of {namespace} on the broker"
        reads = {  # the topics a group reads: those it has committed on
            g: {tp.topic for tp in await admin.list_consumer_group_offsets(g)} for g in groups
        }
        described = await admin.describe_topics(sorted(set().union(*reads.values())))
        partitions = [
            TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
        ]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        behind: dict[str, int] = {}

        async def caught_up() -> bool:
            behind.clear()
            for group in groups:
                offsets = await admin.list_consumer_group_offsets(group)
                left = sum(
                    end - (offsets[tp].offset if tp in offsets else 0)
                    for tp, end in ends.items()
                    if tp.topic in reads[group]
                )
                if left > 0:
                    behind[group] = left
            return not behind

        try:
            await eventually(caught_up, f"the consumer groups of {namespace}", seconds, poll=0.2)
        except AssertionError as late:
            raise AssertionError(f"{late}: messages left {behind}") from None
    finally:
        await consumer.stop()
        await admin.close()


async def last_versions(store: EventStore, filter: EventFilter) -> dict[str, int]:
    """The last version of each stream in ``store`` with events ``filter`` lets through."""
    events = await store.read_all(limit=10_000_000, filter=filter)
    return {e.stream_id: e.stream_version for e in events}


async def streams_applied(
    engine: sa.Engine, wanted: dict[str, dict[str, int]], what: str, seconds: float
) -> None:
    """Wait until each projection named in ``wanted`` has applied, in ``engine``'s
    tracking, every stream up to the version given (exact on either feed: Kafka
    interleaves partitions, so a global position says less there)."""

    def behind() -> dict[str, int]:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(streams_table))
            applied = {(r.projection, r.stream_id): r.version for r in rows}
        return {
            name: sum(1 for s, v in streams.items() if applied.get((name, s), -1) < v)
            for name, streams in wanted.items()
        }

    async def done() -> bool:
        return not any((await asyncio.to_thread(behind)).values())

    try:
        await eventually(done, what, seconds, poll=0.2)
    except AssertionError as late:
        raise AssertionError(f"{late}: streams behind {behind()}") from None


Message = tuple[bytes | None, bytes | None, dict[str, bytes], int]


async def messages_on(bootstrap: str, topic: str) -> list[Message]:
    """Every message on a topic: key, value, headers, partition."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.assignment() or {
            TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
        }
        ends = await consumer.end_offsets(list(partitions))
        found: list[Message] = []
        while sum(ends.values()) > len(found):
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                found += [(r.key, r.value, dict(r.headers), r.partition) for r in records]
        return found
    finally:
        await consumer.stop()
