"""Topics as declared, one history per topic, against a real broker (#18)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from civitas.chassis.topics import events_spec
from civitas.eventkit import NewEvent, RecordedEvent, SqliteEventStore, StreamState
from civitas.eventkit.kafka import KafkaFeed, Relay, TopicSpec, ensure_topics
from civitas.eventkit.kafka.history import (
    LOOK_BACK,
    ForeignHistory,
    UnreadableHistory,
    check_history,
    owner_of,
)
from civitas.eventkit.kafka.topics import FOREVER, TopicMismatch
from tests.support.platform import run_cli
from tests.support.processes import eventually

pytestmark = pytest.mark.kafka
WEEK_MS = 7 * 24 * 3600 * 1000


def fresh_namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def shape(bootstrap: str, topic: str) -> tuple[int, int] | None:
    """(partitions, retention.ms) of a topic, or None when it does not exist."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        if topic not in admin.list_topics():
            return None
        (described,) = admin.describe_topics([topic])
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs=["retention.ms"])
        retention = admin.describe_configs([resource])["topic"][topic]["retention.ms"]["value"]
        return len(described["partitions"]), int(retention)
    finally:
        admin.close()


def messages_in(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


async def cases_store(path: Path, cases: int = 5) -> SqliteEventStore:
    """A store with ``cases`` two-event streams: the same stream ids in every such store,
    as deterministic ids give a reset store."""
    store = SqliteEventStore(path)
    for n in range(cases):
        events = [NewEvent("CaseRegistered", {"n": n}), NewEvent("CaseClassified", {"n": n})]
        await store.append(f"case-{n}", events, StreamState.NO_STREAM)
    return store


async def published(store: SqliteEventStore, bootstrap: str, topic: TopicSpec) -> None:
    relay = Relay(store, bootstrap, topic)
    await relay.start()
    try:
        await relay.drain()
    finally:
        await relay.stop()


async def test_a_consumer_started_before_its_topic_exists_gets_the_declared_topic_and_every_event(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    namespace = fresh_namespace()
    declared = events_spec("cases", namespace)
    seen: list[RecordedEvent] = []

    async def handle(batch: list[RecordedEvent]) -> None:
        seen.extend(batch)

    feed = KafkaFeed(kafka_bootstrap, [declared.name], "insights_cases", namespace=namespace)
    consuming = asyncio.create_task(feed.run(handle))
    store = await cases_store(tmp_path / "cases.db")
    try:

        async def subscribed() -> bool:
            return shape(kafka_bootstrap, feed.dead_letters.name) is not None

        await eventually(subscribed, "the consumer to start", 30)

        async def told_it_is_missing() -> bool:  # asked for its topic's metadata, answered
            return any(
                r.name == "aiokafka.cluster" and f"Topic {declared.name} not found" in r.message
                for r in caplog.records
            )

        await eventually(told_it_is_missing, "the consumer to ask the broker for its topic", 30)
        assert shape(kafka_bootstrap, declared.name) is None  # the broker made none

        await published(store, kafka_bootstrap, declared)

        async def all_seen() -> bool:
            return len(seen) == 10

        await eventually(all_seen, "the consumer to receive the 10 events", 60)
    finally:
        consuming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consuming
    assert shape(kafka_bootstrap, declared.name) == (6, FOREVER)
    assert {event.origin for event in seen} == {await store.identity()}
    await store.close()


async def test_a_topic_with_fewer_partitions_or_another_retention_than_declared_is_refused(
    kafka_bootstrap: str,
) -> None:
    name = f"{fresh_namespace()}.cases.events.v1"
    await ensure_topics(kafka_bootstrap, [TopicSpec(name, partitions=2)])

    with pytest.raises(TopicMismatch, match=rf"{name} has partitions 2, but 6 is declared"):
        await ensure_topics(kafka_bootstrap, [TopicSpec(name, partitions=6)])
    with pytest.raises(TopicMismatch, match=rf"retention.ms -1, but {WEEK_MS} is declared"):
        await ensure_topics(kafka_bootstrap, [TopicSpec(name, partitions=2, retention_ms=WEEK_MS)])
    assert shape(kafka_bootstrap, name) == (2, FOREVER)  # no partition added, nothing changed


async def test_a_relay_refuses_a_topic_that_holds_another_stores_events(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    declared = events_spec("cases", fresh_namespace())
    before_reset = await cases_store(tmp_path / "before.db")
    await published(before_reset, kafka_bootstrap, declared)
    after_reset = await cases_store(tmp_path / "after.db")  # case-0 … case-4 again, v0 and v1

    with pytest.raises(ForeignHistory) as refused:
        await asyncio.wait_for(Relay(after_reset, kafka_bootstrap, declared).run(), 60)

    why = str(refused.value)
    assert declared.name in why
    assert await before_reset.identity() in why
    assert await after_reset.identity() in why
    assert "CIVITAS_KAFKA_NAMESPACE" in why
    assert f"civitas kafka delete-topics --namespace {declared.name.split('.')[0]}" in why
    assert messages_in(kafka_bootstrap, declared.name) == 10  # it published nothing
    await before_reset.append("case-0", [NewEvent("CaseDispatched", {})], 1)
    await published(before_reset, kafka_bootstrap, declared)  # the first store still may
    assert messages_in(kafka_bootstrap, declared.name) == 11
    await before_reset.close()
    await after_reset.close()


async def test_civitas_up_after_a_reset_says_what_to_do_and_delete_topics_asks_first(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    namespace = fresh_namespace()
    old = await cases_store(tmp_path / "old-cases.db")  # the store before the reset
    await published(old, kafka_bootstrap, events_spec("cases", namespace))
    await old.close()
    env = {"CIVITAS_KAFKA_BOOTSTRAP": kafka_bootstrap, "CIVITAS_KAFKA_NAMESPACE": namespace}
    secret = secrets.token_hex(32)

    code, said = await run_cli(["up", "--var", str(tmp_path / "var")], secret, env)

    assert code == 1
    assert "Traceback" not in said
    assert f"civitas: not starting: {namespace}.cases.events.v1 holds the events of" in said
    assert f"civitas kafka delete-topics --namespace {namespace}" in said

    delete = ["kafka", "delete-topics", "--namespace", namespace]
    code, said = await run_cli(delete, secret, env, answer="n\n")
    assert (code, f"  {namespace}.cases.events.v1") == (1, said.splitlines()[1])
    assert "nothing deleted" in said
    assert shape(kafka_bootstrap, f"{namespace}.cases.events.v1") is not None

    code, said = await run_cli([*delete, "--yes"], secret, env)
    assert (code, said.splitlines()[-1]) == (0, "civitas: 1 deleted")

    async def deleted() -> bool:
        return shape(kafka_bootstrap, f"{namespace}.cases.events.v1") is None

    await eventually(deleted, "the topic to be deleted", 30)


async def test_messages_that_are_no_events_do_not_hide_the_history_before_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    declared = TopicSpec(f"{fresh_namespace()}.cases.events.v1", partitions=1)
    before_reset = await cases_store(tmp_path / "before.db")
    await published(before_reset, kafka_bootstrap, declared)
    after_reset = await cases_store(tmp_path / "after.db")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for n in range(LOOK_BACK - 1):  # garbage after the last event, within the look-back
            await producer.send_and_wait(declared.name, b"not an envelope %d" % n)

        with pytest.raises(ForeignHistory) as refused:
            await check_history(
                kafka_bootstrap, declared.name, await owner_of(after_reset, declared.name)
            )
        assert not isinstance(refused.value, UnreadableHistory)
        assert await before_reset.identity() in str(refused.value)  # read past the garbage
        await check_history(
            kafka_bootstrap, declared.name, await owner_of(before_reset, declared.name)
        )

        await producer.send_and_wait(declared.name, b"one more")  # now the last 100 are garbage
        for store in (after_reset, before_reset):
            owner = await owner_of(store, declared.name)
            with pytest.raises(UnreadableHistory, match=rf"\[0\]: none of its last {LOOK_BACK} "):
                await check_history(kafka_bootstrap, declared.name, owner)
    finally:
        await producer.stop()
        await before_reset.close()
        await after_reset.close()
