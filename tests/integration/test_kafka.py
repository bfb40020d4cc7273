"""The relay and the Kafka feed against a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from civitas.chassis.anchoring import Anchorer, AnchorSettings, KafkaAnchors
from civitas.chassis.topics import anchors_spec
from civitas.eventkit import (
    NewEvent,
    ProjectionRunner,
    RecordedEvent,
    SqliteEventStore,
    StoreFeed,
    StreamState,
    create_read_model_engine,
)
from civitas.eventkit.anchors import Anchor, AnchorError, load_or_create_key
from civitas.eventkit.kafka import KafkaFeed, Relay, TopicSpec, events_topic
from civitas.eventkit.kafka.topics import dead_letter_topic
from tests.support.accounts import BalancesProjection, read_balances
from tests.support.platform import free_port
from tests.support.processes import eventually, messages_on

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


NAMESPACE = unique("t")  # this module's topics and groups; never the default namespace


async def fill_accounts(store: SqliteEventStore, accounts: int, movements: int) -> None:
    """Appends movements round-robin across accounts, so streams interleave in the log."""
    for a in range(accounts):
        opened = NewEvent("AccountOpened", {"owner": f"o{a}", "community": "QH-01"})
        await store.append(f"account-{a}", [opened], StreamState.NO_STREAM)
    for m in range(1, movements + 1):
        for a in range(accounts):
            kind = "MoneyDeposited" if m % 4 else "MoneyWithdrawn"
            await store.append(f"account-{a}", [NewEvent(kind, {"amount_fen": m})], m - 1)


def rows(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return read_balances(conn)


async def rebuilt_from_store(store: SqliteEventStore, tmp_path: Path) -> list[tuple[object, ...]]:
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/rebuilt.db")
    await ProjectionRunner(BalancesProjection(), StoreFeed(store), engine).rebuild()
    result = rows(engine)
    engine.dispose()
    return result


@contextlib.asynccontextmanager
async def kafka_projection(
    bootstrap: str, topic: str, tmp_path: Path, label: str = "live"
) -> AsyncIterator[sa.Engine]:
    """The balances projection fed from Kafka, running in the background."""
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/{label}.db")
    feed = KafkaFeed(bootstrap, [topic], unique("balances-"), namespace=NAMESPACE, batch_size=200)
    runner = ProjectionRunner(BalancesProjection(), feed, engine)
    await runner.setup()
    task = asyncio.create_task(runner.run())
    try:
        yield engine
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        engine.dispose()


async def test_each_stream_keeps_its_order_across_partitions(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    for m in range(30):
        for s in range(40):
            await store.append(f"case-{s}", [NewEvent("Noted", {"m": m})], StreamState.ANY)
    topic = TopicSpec(unique(f"{NAMESPACE}.order."), partitions=6)
    relay = Relay(store, kafka_bootstrap, topic, batch_size=250)
    await relay.start()
    await relay.drain()
    await relay.stop()
    seen: list[RecordedEvent] = []

    async def handle(batch: list[RecordedEvent]) -> None:
        seen.extend(batch)

    feed = KafkaFeed(kafka_bootstrap, [topic.name], unique("order-"), namespace=NAMESPACE)
    task = asyncio.create_task(feed.run(handle))

    async def all_seen() -> bool:
        return len(seen) >= 1200

    await eventually(all_seen, "1200 events", 60)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    by_stream: dict[str, list[int]] = {}
    for event in seen:
        by_stream.setdefault(event.stream_id, []).append(event.stream_version)
    assert len(seen) == 1200
    assert by_stream == {f"case-{s}": list(range(30)) for s in range(40)}
    messages = await messages_on(kafka_bootstrap, topic.name)
    assert len({partition for *_, partition in messages}) > 1, "all streams in one partition"
    assert all(len({p for k, *_, p in messages if k == key}) == 1 for key, *_ in messages)
    await store.close()


async def test_messages_carry_the_stream_key_and_the_event_headers(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    event = NewEvent(
        "CaseRegistered", {"title": "路灯"}, correlation_id="corr-7", causation_id="cmd-7"
    )
    await store.append("case-7", [event], StreamState.NO_STREAM)
    topic = TopicSpec(unique(f"{NAMESPACE}.headers."), partitions=2)
    relay = Relay(store, kafka_bootstrap, topic)
    await relay.start()
    await relay.drain()
    await relay.stop()

    ((key, value, headers, _),) = await messages_on(kafka_bootstrap, topic.name)

    assert key == b"case-7"
    assert headers["event_id"] == str(event.event_id).encode()
    assert headers["type"] == b"CaseRegistered"
    assert headers["correlation_id"] == b"corr-7"
    assert headers["causation_id"] == b"cmd-7"
    assert "路灯".encode() in (value or b"")
    assert REGISTRY.get_sample_value("civitas_events_published_total", {"topic": topic.name}) == 1
    assert REGISTRY.get_sample_value("civitas_relay_lag_events", {"topic": topic.name}) == 0
    await store.close()


async def test_events_published_twice_after_a_lost_checkpoint_are_absorbed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await fill_accounts(store, accounts=10, movements=20)
    topic = TopicSpec(unique(f"{NAMESPACE}.twice."), partitions=3)
    relay = Relay(store, kafka_bootstrap, topic, batch_size=70)
    await relay.start()
    await relay.drain()
    await store.save_checkpoint(relay.checkpoint_name, 0)  # as if it crashed before saving
    await relay.drain()
    await relay.stop()
    expected = await rebuilt_from_store(store, tmp_path)

    async with kafka_projection(kafka_bootstrap, topic.name, tmp_path) as live:

        async def caught_up() -> bool:
            return rows(live) == expected

        await eventually(caught_up, "the Kafka-fed read model to equal a rebuild", 60)

    assert len(await messages_on(kafka_bootstrap, topic.name)) == 2 * 210
    await store.close()


@pytest.mark.slow
async def test_a_relay_killed_mid_batch_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    for a in range(100):  # long enough that a kill lands mid-way, quick to store
        events = [NewEvent("AccountOpened", {"owner": f"o{a}", "community": "QH-01"})]
        events += [NewEvent("MoneyDeposited", {"amount_fen": m}) for m in range(1, 201)]
        await store.append(f"account-{a}", events, StreamState.NO_STREAM)
    head = await store.head_position()
    service, namespace = "funds", unique("t")
    relay_cmd = [
        sys.executable,
        "-m",
        "civitas.cli",
        "--store",
        f"sqlite:///{tmp_path}/events.db",
        "relay",
        "--service",
        service,
        "--kafka",
        kafka_bootstrap,
        "--namespace",
        namespace,
        "--batch-size",
        "20",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    checkpoint = f"relay:{events_topic(service, namespace)}"

    first = await asyncio.create_subprocess_exec(*relay_cmd, cwd=ROOT, env=env)
    try:

        async def part_relayed() -> bool:
            return await store.load_checkpoint(checkpoint) > head // 10

        await eventually(part_relayed, "the relay to publish a part", 60, poll=0.005)
    finally:
        first.send_signal(signal.SIGKILL)
        await first.wait()
    killed_at = await store.load_checkpoint(checkpoint)
    second = await asyncio.create_subprocess_exec(*relay_cmd, cwd=ROOT, env=env)
    try:

        async def all_relayed() -> bool:
            return await store.load_checkpoint(checkpoint) == head

        await eventually(all_relayed, "the restarted relay to publish everything", 120)
    finally:
        second.terminate()
        await second.wait()
    expected = await rebuilt_from_store(store, tmp_path)

    topic = events_topic(service, namespace)
    async with kafka_projection(kafka_bootstrap, topic, tmp_path) as live:

        async def caught_up() -> bool:
            return rows(live) == expected

        await eventually(caught_up, "the Kafka-fed read model to equal a rebuild", 90)

    assert 0 < killed_at < head
    messages = await messages_on(kafka_bootstrap, topic)
    assert {h["event_id"] for _, _, h, _ in messages} == {
        str(e.event_id).encode() for e in await store.read_all(limit=100_000)
    }
    await store.close()


async def test_an_undecodable_message_is_set_aside_and_the_consumer_goes_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await fill_accounts(store, accounts=2, movements=3)
    topic = TopicSpec(unique(f"{NAMESPACE}.dlq."), partitions=1)
    relay = Relay(store, kafka_bootstrap, topic)
    await relay.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    await producer.send_and_wait(topic.name, b"\xff not json", key=b"account-0")
    await producer.send_and_wait(topic.name, b'{"type": "half an envelope"}', key=b"account-1")
    await producer.stop()
    await relay.drain()
    await relay.stop()
    expected = await rebuilt_from_store(store, tmp_path)

    async with kafka_projection(kafka_bootstrap, topic.name, tmp_path) as live:

        async def caught_up() -> bool:
            return rows(live) == expected

        await eventually(caught_up, "the valid events to be applied", 60)
        group = next(
            labels["group"]
            for metric in REGISTRY.collect()
            if metric.name == "civitas_dead_letters"
            for labels in (s.labels for s in metric.samples)
            if labels.get("topic") == topic.name
        )

    dlq = dead_letter_topic(group.removeprefix(f"{NAMESPACE}."), NAMESPACE)
    dead = await messages_on(kafka_bootstrap, dlq)
    reasons = sorted(h["reason"].decode() for _, _, h, _ in dead)
    assert len(dead) == 2
    assert all(r.startswith("not an event envelope") for r in reasons)
    assert {h["source_topic"] for _, _, h, _ in dead} == {topic.name.encode()}
    assert (
        REGISTRY.get_sample_value(
            "civitas_dead_letters_total", {"group": group, "topic": topic.name}
        )
        == 2
    )
    await store.close()


class FailingAtFirst(BalancesProjection):
    """The balances projection whose read model fails the first times it meets a
    withdrawal, as a database that is briefly unreachable would."""

    def __init__(self, failures: int) -> None:
        self.failures_left = failures

    def apply(self, event: RecordedEvent, conn: sa.Connection) -> None:
        if event.type == "MoneyWithdrawn" and self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("read model unavailable")
        super().apply(event, conn)


async def test_a_batch_whose_handler_fails_comes_again_and_nothing_is_skipped(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    await fill_accounts(store, accounts=4, movements=12)
    topic = TopicSpec(unique(f"{NAMESPACE}.retry."), partitions=3)
    relay = Relay(store, kafka_bootstrap, topic)
    await relay.start()
    await relay.drain()
    await relay.stop()
    expected = await rebuilt_from_store(store, tmp_path)

    engine = create_read_model_engine(f"sqlite:///{tmp_path}/failing.db")
    projection = FailingAtFirst(failures=3)
    feed = KafkaFeed(
        kafka_bootstrap, [topic.name], unique("failing-"), namespace=NAMESPACE, batch_size=10
    )
    runner = ProjectionRunner(projection, feed, engine)
    await runner.setup()
    task = asyncio.create_task(runner.run())
    try:

        async def caught_up() -> bool:
            return rows(engine) == expected

        await eventually(caught_up, "the read model to equal a rebuild despite failures", 60)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        engine.dispose()
    assert projection.failures_left == 0  # it did fail, three times, and the batches came again
    await store.close()


@pytest.mark.slow
async def test_relay_and_consumer_resume_after_the_broker_restarts_under_load(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    home = tmp_path / "kafka"
    port, controller_port = free_port(), free_port()
    broker_env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller_port),
        "KAFKA_HOME": str(home),
        "PYTHON": sys.executable,
    }
    bootstrap = f"127.0.0.1:{port}"

    def broker(action: str) -> None:
        subprocess.run(
            ["bash", f"scripts/kafka-{action}.sh"],
            cwd=ROOT,
            env=broker_env,
            check=True,
            capture_output=True,
            timeout=180,
        )

    broker("up")
    store = SqliteEventStore(tmp_path / "events.db")
    await fill_accounts(store, accounts=20, movements=1)
    topic = TopicSpec(unique(f"{NAMESPACE}.restart."), partitions=3)
    relay_task = asyncio.create_task(Relay(store, bootstrap, topic, retry_delay=0.5).run())
    writing = True

    async def write() -> int:
        m = 2
        while writing:
            for a in range(20):
                await store.append(
                    f"account-{a}", [NewEvent("MoneyDeposited", {"amount_fen": m})], StreamState.ANY
                )
            m += 1
            await asyncio.sleep(0.05)
        return m

    try:
        async with kafka_projection(bootstrap, topic.name, tmp_path) as live:
            writer = asyncio.create_task(write())
            await asyncio.sleep(3)
            await asyncio.to_thread(broker, "down")
            await asyncio.sleep(3)
            await asyncio.to_thread(broker, "up")
            await asyncio.sleep(3)
            writing = False
            await writer
            expected = await rebuilt_from_store(store, tmp_path)

            async def caught_up() -> bool:
                return rows(live) == expected

            await eventually(caught_up, "the read model to catch up after the restart", 120)
    finally:
        relay_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay_task
        await asyncio.to_thread(broker, "down")
        await store.close()
    assert sum(row[3] for row in expected) > 20 * 50  # writes went on through the restart


async def funds_to_anchor(tmp_path: Path) -> tuple[SqliteEventStore, AnchorSettings, TopicSpec]:
    """funds' store of 18 events, its anchor settings and a topic of this test's own."""
    store = SqliteEventStore(tmp_path / "funds.db")
    await fill_accounts(store, accounts=3, movements=5)
    settings = AnchorSettings("funds", tmp_path / "anchor.key", tmp_path / "anchors.jsonl", 60)
    return store, settings, anchors_spec("funds", unique("anchors"))


async def anchored_once(
    bootstrap: str, topic: TopicSpec, store: SqliteEventStore, settings: AnchorSettings
) -> Anchor | None:
    """One period of a (re)started service's anchoring, publishing to ``topic``."""
    kafka = KafkaAnchors(bootstrap, topic)
    try:
        return await Anchorer(store, settings, kafka=kafka).anchor_once()
    finally:
        await kafka.close()


async def test_a_signed_anchor_reaches_the_services_anchors_topic(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    store, settings, topic = await funds_to_anchor(tmp_path)
    try:
        anchor = await anchored_once(kafka_bootstrap, topic, store, settings)
    finally:
        await store.close()
    assert anchor is not None

    ((key, value, _, partition),) = await messages_on(kafka_bootstrap, topic.name)
    published = Anchor.from_json(value.decode())
    assert (key, partition) == (b"funds", 0)
    assert published == anchor
    assert settings.anchors_file.read_text().splitlines() == [value.decode()]
    published.check(load_or_create_key(settings.key_file).public_key())


async def test_a_service_whose_anchors_file_is_gone_remembers_its_anchor_from_the_topic(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    store, settings, topic = await funds_to_anchor(tmp_path)

    async def restarted() -> Anchor | None:
        return await anchored_once(kafka_bootstrap, topic, store, settings)

    try:
        first = await restarted()
        assert first is not None
        kept = settings.anchors_file.read_text()
        settings.anchors_file.unlink()  # the insider removes the file, then rewrites the store
        with sqlite3.connect(tmp_path / "funds.db") as conn:
            for table in ("events", "ledger", "streams"):
                conn.execute(f"DELETE FROM {table} WHERE stream_id = 'account-2'")
        grown = [NewEvent("Paid", {"fen": n}) for n in range(7)]  # 12 + 7 events: past 18
        await store.append("account-x", grown, StreamState.NO_STREAM)
        with pytest.raises(AnchorError, match=r"is missing, its last anchor on \S+ covers 18"):
            await restarted()
        settings.anchors_file.write_text(kept)  # restored from its copy: the rewrite shows
        with pytest.raises(AnchorError, match="no longer extends its anchor at tree size 18"):
            await restarted()
    finally:
        await store.close()
    assert not settings.anchors_file.read_text().replace(kept, "")  # nothing signed since
    assert len(await messages_on(kafka_bootstrap, topic.name)) == 1
