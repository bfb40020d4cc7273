"""Poison events on Kafka: parked in the consumer's store and on its group's dead-letter
topic, in each stream's order, while the other streams flow; the lag read from the
broker whether batches come or not."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from civitas.eventkit import (
    NewEvent,
    ProjectionRunner,
    SqliteEventStore,
    create_read_model_engine,
    parking,
)
from civitas.eventkit.kafka import KafkaFeed, Relay, TopicSpec
from civitas.eventkit.kafka.envelope import encode_event
from civitas.eventkit.projection import Check, Projection
from tests.support.accounts import BalancesProjection
from tests.support.parking import (
    BROKEN,
    QUICK,
    BrokenOnOneStream,
    Stalled,
    amounts_are_integers,
    balances_of,
    deposit,
    kinds,
    open_accounts,
    parked_of,
    rebuilt,
    running,
)
from tests.support.processes import eventually, messages_on

pytestmark = pytest.mark.kafka
NAMESPACE = f"t{uuid.uuid4().hex[:10]}"  # this module's topics and groups


@asynccontextmanager
async def relaying(
    bootstrap: str, tmp_path: Path, accounts: int, movements: int
) -> AsyncIterator[tuple[SqliteEventStore, Relay, str]]:
    """A store of accounts, its relay started and drained to a topic of 3 partitions."""
    store = SqliteEventStore(tmp_path / "events.db")
    await open_accounts(store, accounts, movements)
    topic = TopicSpec(f"{NAMESPACE}.parking.{uuid.uuid4().hex[:8]}", partitions=3)
    relay = Relay(store, bootstrap, topic)
    await relay.start()
    await relay.drain()
    try:
        yield store, relay, topic.name
    finally:
        await relay.stop()
        await store.close()


def consumer_of(
    bootstrap: str,
    topic: str,
    engine: sa.Engine,
    projection: Projection,
    check: Check | None = None,
) -> ProjectionRunner:
    group = f"parking-{uuid.uuid4().hex[:8]}"
    feed = KafkaFeed(bootstrap, [topic], group, namespace=NAMESPACE, batch_size=50)
    return ProjectionRunner(projection, feed, engine, check=check, retrying=QUICK)


async def test_a_stream_whose_handler_fails_is_parked_while_others_flow_and_retried_after_a_fix(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    projection = BrokenOnOneStream()
    async with relaying(kafka_bootstrap, tmp_path, 4, 3) as (store, relay, topic):
        runner = consumer_of(kafka_bootstrap, topic, engine, projection)
        async with running(runner):
            await deposit(store, "account-0", 100, 3)
            await deposit(store, BROKEN, 7, 3)
            await deposit(store, "account-2", 1000, 3)
            await relay.drain()

            async def others_applied() -> bool:
                balances = {row[0]: row[2] for row in balances_of(engine)}
                return balances == {"0": 106, "1": 1, "2": 1006, "3": 6}

            await eventually(others_applied, "the other streams to be applied", 60)
            assert kinds(parked_of(engine, runner.name)) == [
                (BROKEN, 2, "failed", 3),
                (BROKEN, 3, "behind", 0),
                (BROKEN, 4, "behind", 0),
            ]

            async def committed() -> bool:  # the batch completed: nothing waits behind it
                return await runner.observe_lag() == (0, 0.0)

            await eventually(committed, "the group's lag to read 0", 30)
            dead = await messages_on(kafka_bootstrap, runner.feed.dead_letters.name)  # type: ignore[attr-defined]
            assert sorted(h["reason"].decode().split(":")[0] for _, _, h, _ in dead) == [
                "behind",
                "behind",
                "failed",
            ]

            projection.broken = False
            with engine.begin() as conn:
                parking.request_retry(conn, runner.name, BROKEN)

            async def retried() -> bool:
                return not parked_of(engine, runner.name, parking.OPEN)

            await eventually(retried, "the running consumer to apply the retried stream", 30)
        assert balances_of(engine) == await rebuilt(store, tmp_path)
    engine.dispose()


async def test_a_forged_far_ahead_envelope_is_parked_and_the_genuine_events_are_applied(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    async with relaying(kafka_bootstrap, tmp_path, 3, 2) as (store, relay, topic):
        genuine = [
            value
            for key, value, _, _ in await messages_on(kafka_bootstrap, topic)
            if key == BROKEN.encode()
        ]
        forged = orjson.loads(genuine[-1] or b"")
        forged |= {"stream_version": 1000, "event_id": str(uuid.uuid4())}
        forged["data"] = {"amount_fen": 500_000}
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        await producer.send_and_wait(topic, orjson.dumps(forged), key=BROKEN.encode())
        await producer.stop()
        await deposit(store, BROKEN, 5, 2)
        await deposit(store, BROKEN, 6, 3)
        await relay.drain()
        runner = consumer_of(kafka_bootstrap, topic, engine, BalancesProjection())
        async with running(runner):

            async def genuine_applied() -> bool:
                return {row[0]: row[2] for row in balances_of(engine)}.get("1") == 1 + 2 + 5 + 6

            await eventually(genuine_applied, "the genuine events after the forged one", 60)
        [parked] = parked_of(engine, runner.name)
        assert (parked.stream_version, parked.reason) == (1000, "gap: version 1000, expected 3")
    engine.dispose()


async def test_a_dropped_forged_version_1000_never_takes_the_place_of_the_genuine_one(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The README's example: a forged event at version 1000 is parked as a gap, versions
    3 to 999 flow, the genuine 1000 is parked behind the forged one; the operator drops
    the forged one and retries the stream: the genuine 1000 is applied."""
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    async with relaying(kafka_bootstrap, tmp_path, 3, 2) as (store, relay, topic):
        [*_, last] = [
            v for k, v, _, _ in await messages_on(kafka_bootstrap, topic) if k == b"account-1"
        ]
        forged = orjson.loads(last or b"") | {"stream_version": 1000, "event_id": str(uuid.uuid4())}
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        await producer.send_and_wait(topic, orjson.dumps(forged), key=BROKEN.encode())
        await producer.stop()
        genuine = [NewEvent("MoneyDeposited", {"amount_fen": 1}) for _ in range(3, 1001)]
        await store.append(BROKEN, genuine, 2)
        await relay.drain()
        runner = consumer_of(kafka_bootstrap, topic, engine, BalancesProjection())
        async with running(runner):

            async def both_parked() -> bool:
                return len(parked_of(engine, runner.name)) == 2

            await eventually(both_parked, "the genuine 1000 parked behind the forged one", 60)
            gap, behind = parked_of(engine, runner.name)
            assert kinds([gap, behind]) == [(BROKEN, 1000, "gap", 0), (BROKEN, 1000, "behind", 0)]
            with engine.begin() as conn:
                parking.drop(conn, runner.name, None, "ops", "forged", ids=[gap.id])

            async def passed_over() -> bool:
                return parked_of(engine, runner.name)[0].state == parking.DROPPED

            await eventually(passed_over, "the running consumer to pass the drop over", 30)
            with engine.begin() as conn:
                assert parking.request_retry(conn, runner.name, BROKEN) == 1

            async def retried() -> bool:
                return not parked_of(engine, runner.name, parking.OPEN)

            await eventually(retried, "the running consumer to retry the genuine 1000", 30)
        assert balances_of(engine) == await rebuilt(store, tmp_path)
        assert [row.state for row in parked_of(engine, runner.name)] == [
            parking.DROPPED,
            parking.APPLIED,
        ]
    engine.dispose()


async def test_a_reset_store_s_events_at_versions_handled_already_are_parked_as_origin(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    reset = SqliteEventStore(tmp_path / "reset.db")  # the same stream ids, a new history
    await open_accounts(reset, accounts=2, movements=1)
    async with relaying(kafka_bootstrap, tmp_path, 2, 2) as (_, _, topic):
        runner = consumer_of(kafka_bootstrap, topic, engine, BalancesProjection())
        async with running(runner):

            async def applied() -> bool:
                return {row[0]: row[2] for row in balances_of(engine)} == {"0": 3, "1": 3}

            await eventually(applied, "the first store's events", 60)
            await publish_history(kafka_bootstrap, topic, reset)  # past the relay's check

            async def parked() -> bool:
                return len(parked_of(engine, runner.name)) == 4

            await eventually(parked, "the reset store's events parked", 30)
        assert [
            (r.stream_id, r.stream_version, r.reason.split(":")[0])
            for r in parked_of(engine, runner.name)
        ] == [
            ("account-0", 0, "origin"),
            ("account-0", 1, "origin"),
            (BROKEN, 0, "origin"),
            (BROKEN, 1, "origin"),
        ]
        assert {row[0]: row[2] for row in balances_of(engine)} == {"0": 3, "1": 3}
    engine.dispose()
    await reset.close()


async def publish_history(bootstrap: str, topic: str, store: SqliteEventStore) -> None:
    """Every event of ``store`` into ``topic``, as its relay would publish them."""
    identity = await store.identity()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for event in await store.read_all(after=0, limit=1000):
            key, value, headers = encode_event(event, identity)
            await producer.send_and_wait(
                topic, value, key=key, headers=[(n, t.encode()) for n, t in headers.items()]
            )
    finally:
        await producer.stop()


async def test_a_message_that_is_not_json_and_an_invalid_event_are_parked_the_rest_flows(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    async with relaying(kafka_bootstrap, tmp_path, 3, 1) as (store, relay, topic):
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        await producer.send_and_wait(topic, b"\xff not json", key=b"account-0")
        await producer.stop()
        await deposit(store, BROKEN, "lots", 1)
        await deposit(store, BROKEN, 5, 2)
        await deposit(store, "account-2", 7, 1)
        await relay.drain()
        runner = consumer_of(
            kafka_bootstrap, topic, engine, BalancesProjection(), amounts_are_integers
        )
        async with running(runner):

            async def others_applied() -> bool:
                balances = {row[0]: row[2] for row in balances_of(engine)}
                return (
                    balances == {"0": 1, "1": 1, "2": 8}
                    and len(parked_of(engine, runner.name)) == 3
                )

            await eventually(others_applied, "the valid events of other streams", 60)
        undecodable, invalid, behind = parked_of(engine, runner.name)
        assert undecodable.stream_id == "account-0"
        assert undecodable.stream_version is None
        assert undecodable.reason.startswith("undecodable: not an event envelope")
        assert undecodable.payload  # the raw bytes, base64
        assert invalid.reason == "invalid: data.amount_fen: 'lots' is not an integer"
        assert (behind.stream_version, behind.reason) == (3, "behind: account-1@2 is parked")
    engine.dispose()


async def test_a_stalled_kafka_consumer_shows_its_lag_in_messages_and_growing_seconds(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    engine = create_read_model_engine(f"sqlite:///{tmp_path}/live.db")
    projection = Stalled()
    async with relaying(kafka_bootstrap, tmp_path, 2, 2) as (_, _, topic):
        runner = consumer_of(kafka_bootstrap, topic, engine, projection)
        group = runner.feed.group  # type: ignore[attr-defined]
        try:
            async with running(runner):
                first = await runner.observe_lag()
                await asyncio.sleep(1.5)
                second = await runner.observe_lag()
                assert first[0] == second[0] == 6  # nothing committed: every message waits
                assert second[1] > first[1] > 0
                lag = REGISTRY.get_sample_value(
                    "civitas_consumer_lag_messages", {"group": group, "topic": topic}
                )
                assert lag == 6
                projection.release.set()

                async def caught_up() -> bool:
                    return await runner.observe_lag() == (0, 0.0)

                await eventually(caught_up, "the released consumer's lag to read 0", 30)
        finally:
            projection.release.set()
    engine.dispose()


async def test_envelopes_over_the_stores_bounds_are_parked_undecodable_and_the_next_event_applied(
    kafka_bootstrap: str, tmp_path: Path, read_model_urls: Callable[[str], str]
) -> None:
    engine = create_read_model_engine(read_model_urls("live"))
    async with relaying(kafka_bootstrap, tmp_path, 2, 1) as (store, relay, topic):
        [opened, _] = [
            v for k, v, _, _ in await messages_on(kafka_bootstrap, topic) if k == b"account-0"
        ]
        envelope = orjson.loads(opened or b"") | {"event_id": str(uuid.uuid4())}
        too_long = "account-" + "9" * 300  # the store takes at most 255 characters
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        await producer.send_and_wait(
            topic, orjson.dumps(envelope | {"stream_id": too_long}), key=too_long.encode()
        )
        await producer.send_and_wait(
            topic, orjson.dumps(envelope | {"correlation_id": "c" * 65}), key=b"account-0"
        )
        await producer.stop()
        await deposit(store, "account-0", 7, 1)
        await relay.drain()
        runner = consumer_of(kafka_bootstrap, topic, engine, BalancesProjection())
        async with running(runner):

            async def next_applied() -> bool:
                balances = {row[0]: row[2] for row in balances_of(engine)}
                return balances == {"0": 8, "1": 1} and len(parked_of(engine, runner.name)) == 2

            await eventually(next_applied, "the event after the over-long envelopes", 60)
        parked = sorted(parked_of(engine, runner.name), key=lambda row: row.reason)
    engine.dispose()
    assert [(row.stream_id, row.stream_version, row.reason.split(": ")[:3]) for row in parked] == [
        ("account-0", None, ["undecodable", "not an event envelope", "correlation_id"]),
        (too_long[:255], None, ["undecodable", "not an event envelope", "stream_id"]),
    ]
