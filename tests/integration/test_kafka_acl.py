"""An authenticated Kafka: each service's principal writes only its own topics and reads
what the catalog says it consumes, on the local broker with SASL/SCRAM and ACLs."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError

from civitas.chassis.kafka_access import platform_grants, principal
from civitas.chassis.outbox import relaying
from civitas.chassis.preflight import check_kafka
from civitas.chassis.settings import Locations, ServiceSettings
from civitas.chassis.topics import events_spec
from civitas.eventkit import NewEvent, RecordedEvent, SqliteEventStore, StreamState
from civitas.eventkit.kafka import KafkaFeed, Relay
from civitas.eventkit.kafka.acls import create_acls, revoke_acls
from civitas.eventkit.kafka.history import UnreadableHistory
from civitas.eventkit.kafka.topics import TopicSpec, delete_topics, ensure_topics, namespace_topics
from tests.support.kafka_auth import ADMIN, ScramBroker
from tests.support.processes import eventually

pytestmark = pytest.mark.kafka


@pytest.fixture
async def namespace(kafka_scram: ScramBroker) -> AsyncIterator[str]:
    """A fresh namespace with every service's ACLs in it, revoked (and its topics
    deleted) afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    admin = kafka_scram.security(ADMIN)
    granted = platform_grants(name)
    await create_acls(kafka_scram.bootstrap, granted, admin)
    yield name
    await revoke_acls(kafka_scram.bootstrap, granted, admin)
    topics = await namespace_topics(kafka_scram.bootstrap, name, admin)
    await delete_topics(kafka_scram.bootstrap, topics, admin)


async def cases_store(path: Path, cases: int = 3) -> SqliteEventStore:
    store = SqliteEventStore(path)
    for n in range(cases):
        events = [NewEvent("CaseRegistered", {"n": n}), NewEvent("CaseClassified", {"n": n})]
        await store.append(f"case-{n}", events, StreamState.NO_STREAM)
    return store


async def test_a_services_relay_publishes_as_its_principal_and_a_consumer_reads_as_its_own(
    kafka_scram: ScramBroker, namespace: str, tmp_path: Path
) -> None:
    topic = events_spec("cases", namespace)
    store = await cases_store(tmp_path / "cases.db")
    relay = Relay(
        store, kafka_scram.bootstrap, topic, security=kafka_scram.security("civitas-cases")
    )
    await relay.start()
    try:
        assert await relay.drain() == 6
    finally:
        await relay.stop()
    seen: list[RecordedEvent] = []

    async def handle(batch: list[RecordedEvent]) -> None:
        seen.extend(batch)

    feed = KafkaFeed(  # funds reacts to cases' events: its group, its dead letters
        kafka_scram.bootstrap,
        [topic.name],
        "funds.case_requests",
        namespace=namespace,
        security=kafka_scram.security("civitas-funds"),
    )
    consuming = asyncio.create_task(feed.run(handle))
    try:

        async def all_seen() -> bool:
            return len(seen) == 6 or consuming.done()

        await eventually(all_seen, "funds to read the 6 events of cases", 20)
    finally:
        consuming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consuming
    assert [(e.stream_id, e.stream_version) for e in seen if e.stream_id == "case-0"] == [
        ("case-0", 0),
        ("case-0", 1),
    ]
    await store.close()


async def test_a_service_set_up_by_civitas_kafka_settings_relays_as_its_own_principal(
    kafka_scram: ScramBroker, namespace: str, tmp_path: Path
) -> None:
    env = {
        "CIVITAS_AUTH_SECRET": "s" * 32,
        "CIVITAS_VAR_DIR": str(tmp_path),
        "CIVITAS_KAFKA_BOOTSTRAP": kafka_scram.bootstrap,
        "CIVITAS_KAFKA_NAMESPACE": namespace,
        "CIVITAS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CIVITAS_KAFKA_PASSWORD_FILE": str(kafka_scram.secrets / "civitas-volunteers.password"),
    }
    settings = ServiceSettings.from_env("volunteers", env)  # no username: civitas-volunteers
    (tmp_path / "volunteers").mkdir()  # where its read model, and the relay's lease, live
    store = await cases_store(tmp_path / "volunteers.db")
    async with relaying(store, settings):
        topic = events_spec("volunteers", namespace).name

        async def relayed() -> bool:
            return messages_on(kafka_scram, topic) == 6

        await eventually(relayed, "the volunteers relay to publish 6 events", 20)
    await store.close()


async def test_civitas_ups_preflight_asks_as_the_operators_principal(
    kafka_scram: ScramBroker, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = events_spec("cases", namespace)
    await published_once(kafka_scram, cases, principal("cases"))  # not an envelope
    keepers = [Locations.of("cases", {}, tmp_path)]
    for name, value in {
        "CIVITAS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CIVITAS_KAFKA_USERNAME": ADMIN,
        "CIVITAS_KAFKA_PASSWORD_FILE": str(kafka_scram.secrets / f"{ADMIN}.password"),
    }.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(UnreadableHistory):  # it read cases' topic, and said what it found
        await check_kafka(kafka_scram.bootstrap, namespace, keepers)


async def test_a_principal_publishing_to_another_services_topic_is_refused(
    kafka_scram: ScramBroker, namespace: str, tmp_path: Path
) -> None:
    theirs = events_spec("party_orgs", namespace)
    await published_once(kafka_scram, theirs, principal("party_orgs"))
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_scram.bootstrap,
        request_timeout_ms=5000,
        **kafka_scram.security(principal("cases")).aiokafka(),
    )
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(theirs.name, b"forged", key=b"unit-QH")
    finally:
        await producer.stop()
    assert messages_on(kafka_scram, theirs.name) == 1  # party_orgs' own message alone


async def published_once(broker: ScramBroker, topic: TopicSpec, as_principal: str) -> None:
    """``topic`` created, and one message on it, as its own service (as its relay would)."""
    await ensure_topics(broker.bootstrap, [topic], broker.security(as_principal))
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, **broker.security(as_principal).aiokafka()
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic.name, b"genuine", key=b"unit-QH")
    finally:
        await producer.stop()


async def test_a_wrong_password_is_refused_and_writes_nothing(
    kafka_scram: ScramBroker, namespace: str
) -> None:
    own = events_spec("cases", namespace)
    await published_once(kafka_scram, own, principal("cases"))
    wrong = kafka_scram.security(principal("cases"), password="not-" + uuid.uuid4().hex)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_scram.bootstrap, request_timeout_ms=5000, **wrong.aiokafka()
    )
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()
    assert messages_on(kafka_scram, own.name) == 1


def test_an_anonymous_plaintext_client_is_refused(kafka_scram: ScramBroker) -> None:
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):  # hung up on at once
        KafkaAdminClient(
            bootstrap_servers=kafka_scram.bootstrap,
            request_timeout_ms=3000,
            bootstrap_timeout_ms=3000,
        )


def messages_on(broker: ScramBroker, topic: str) -> int:
    """How many messages ``topic`` holds, asked as the super user."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, **broker.security(ADMIN).kafka_python()
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()
