"""Leases: what must run once runs on one replica at a time, and moves to another
replica within a few seconds when its holder dies.

The replicas here are processes (``python -m civitas.party_orgs``) on one store and one
read-model database, killed with SIGKILL: no lease is given back, the kernel (SQLite's
file lock) or the server (PostgreSQL's session lock) must free it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import signal
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from civitas.chassis.auth import Role, TokenAuthority
from civitas.chassis.readiness import Readiness, composing
from civitas.chassis.server import start_grpc_server
from civitas.chassis.service import leading, reporting
from civitas.chassis.topics import events_spec
from civitas.eventkit import (
    NewEvent,
    RecordedEvent,
    SqliteEventStore,
    StreamState,
    open_event_store,
)
from civitas.eventkit.kafka import KafkaFeed, Relay, TopicSpec, ensure_topics
from civitas.eventkit.lease import (
    BEAT_SECONDS,
    BEAT_TIMEOUT,
    LEASE_LOCK_SPACE,
    FileLease,
    HeldLease,
    PostgresLease,
    lease_at,
)
from civitas.party_orgs.bootstrap import run_party_orgs
from civitas.party_orgs.directory import Directory
from civitas.party_orgs.v1 import party_orgs_pb2 as pb
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as pb_grpc
from civitas.runner import wait_healthy
from tests.conftest import POSTGRES_URL, drop_schema, missing_dependency, postgres_reachable
from tests.support.cases_platform import settings_for
from tests.support.platform import ROOT, SECRET, free_port
from tests.support.processes import eventually

TAKEOVER_BOUND = 5.0
"""Seconds from a holder's death to its lease held again elsewhere: SQLite's lock is
freed when the process dies and tried every 0.5 s; PostgreSQL's when the server sees
the socket close, the same."""
DIRECTORY_WORK = f"projection-{Directory.name}"


@pytest.fixture
async def postgres() -> AsyncIterator[Callable[[], str]]:
    """Makes fresh schemas on the test server; drops them after."""
    if not await postgres_reachable():
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}")
    made: list[str] = []

    def schema() -> str:
        made.append(f"t_{uuid.uuid4().hex[:12]}")
        return made[-1]

    yield schema
    for name in made:
        await drop_schema(name)


async def _terminate_lease_sessions(schema: str, work: str) -> int:
    """End, from the server's side, the session holding ``work``'s lease (an operator's
    pg_terminate_backend, or a server that lost sight of its client); how many ended."""
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = "
                "'advisory' AND granted AND objsubid = 2 AND classid = $1 "
                "AND objid = (hashtext($2)::bigint & 4294967295)::oid",
                LEASE_LOCK_SPACE,
                f"{schema}:{work}",
            )
        )
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_a_postgres_lease_is_held_once_per_schema_and_work(
    postgres: Callable[[], str],
) -> None:
    schema, other = postgres(), postgres()
    first, second = PostgresLease(POSTGRES_URL, schema, "relay-x"), None
    elsewhere = PostgresLease(POSTGRES_URL, other, "relay-x")
    another_work = PostgresLease(POSTGRES_URL, schema, "relay-y")
    try:
        await asyncio.wait_for(first.acquire(), 5)
        await asyncio.wait_for(elsewhere.acquire(), 5)  # another schema: another lease
        await asyncio.wait_for(another_work.acquire(), 5)
        second = PostgresLease(POSTGRES_URL, schema, "relay-x")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(second.acquire(), 1.5)
        await first.release()
        await asyncio.wait_for(second.acquire(), 2)
    finally:
        for lease in (first, second, elsewhere, another_work):
            if lease is not None:
                await lease.release()


@pytest.mark.postgres
async def test_a_holder_whose_session_the_server_ended_stops_and_another_takes_the_lease(
    postgres: Callable[[], str],
) -> None:
    """The case where two holders could overlap: the server ended the session, the old
    holder has not looked yet. It notices within a beat and its timeout."""
    schema = postgres()
    holder, waiter = (PostgresLease(POSTGRES_URL, schema, "relay-x") for _ in range(2))
    try:
        await holder.acquire()
        waiting = asyncio.create_task(waiter.acquire())
        taken_at: list[float] = []
        waiting.add_done_callback(lambda _: taken_at.append(time.monotonic()))
        await asyncio.sleep(1)
        assert not waiting.done()
        ended = time.monotonic()
        assert await _terminate_lease_sessions(schema, "relay-x") == 1
        await asyncio.wait_for(holder.lost(), BEAT_SECONDS + BEAT_TIMEOUT + 1)
        noticed = time.monotonic() - ended
        await asyncio.wait_for(waiting, TAKEOVER_BOUND)
        taken = taken_at[0] - ended
        assert noticed <= BEAT_SECONDS + BEAT_TIMEOUT + 0.5, noticed
        assert taken < TAKEOVER_BOUND, taken
    finally:
        await holder.release()
        await waiter.release()


async def test_a_file_lease_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    path = tmp_path / "read.db.lease-relay-x"
    first, second = FileLease(path, "relay-x", poll=0.05), FileLease(path, "relay-x", poll=0.05)
    await first.acquire()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(second.acquire(), 0.5)
    await first.release()
    await asyncio.wait_for(second.acquire(), 1)
    await second.release()


def test_leases_are_found_by_the_read_model_url_and_bad_names_are_refused(
    tmp_path: Path,
) -> None:
    lease = lease_at(f"sqlite:///{tmp_path}/read.db", "relay-cases")
    assert isinstance(lease, FileLease)
    assert lease.path == Path(f"{tmp_path}/read.db.lease-relay-cases")
    assert isinstance(lease_at("sqlite://", "relay-cases"), HeldLease)
    assert isinstance(lease_at(f"{POSTGRES_URL}?schema=cases", "relay-cases"), PostgresLease)
    for bad in ("", "../etc/passwd", "a b", "x" * 101):
        with pytest.raises(ValueError, match="lease name"):
            lease_at(f"sqlite:///{tmp_path}/read.db", bad)
    with pytest.raises(ValueError, match="no lease"):
        lease_at("mysql://localhost/db", "relay-cases")
    assert not list(tmp_path.iterdir())  # nothing was made for a refused name


async def _serving(port: int) -> bool:
    """Whether the gRPC health service at ``port`` says SERVING."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=2
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def _failing() -> None:
    raise RuntimeError("the broker refuses this topic")


@contextlib.asynccontextmanager
async def _replica_leading(lease: FileLease) -> AsyncIterator[int]:
    """A server whose health is a readiness, and a failing work led under ``lease``."""
    server = await start_grpc_server([], [], authority=TokenAuthority(SECRET), port=0)
    readiness = Readiness()
    reports = asyncio.create_task(reporting(readiness, server, every=0.1))
    try:
        with composing(readiness):
            async with leading(lease, _failing):
                yield server.port
    finally:
        reports.cancel()
        await server.stop(0)


async def test_a_replica_whose_leased_work_keeps_failing_says_not_serving_and_a_follower_serves(
    tmp_path: Path,
) -> None:
    path = tmp_path / "read.db.lease-relay-x"
    async with (
        _replica_leading(FileLease(path, "relay-x")) as leader,
        _replica_leading(FileLease(path, "relay-x")) as follower,
    ):

        async def leader_not_serving() -> bool:
            return not await _serving(leader)

        await eventually(leader_not_serving, "the failing leader to say NOT_SERVING", 10)
        assert await _serving(follower)


# -- replicas as processes --------------------------------------------------------------


@dataclass
class Replica:
    process: asyncio.subprocess.Process
    grpc_port: int
    metrics_port: int

    async def metric(self, name: str, **labels: str) -> float:
        """A sample of the replica's /metrics (0 when it has none)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        for family in text_string_to_metric_families(text.decode()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    async def holds(self, work: str) -> bool:
        return await self.metric("civitas_lease_held", work=work) == 1


@contextlib.asynccontextmanager
async def _replicas(
    env: dict[str, str], logs: Path
) -> AsyncIterator[Callable[[], Awaitable[Replica]]]:
    """Starts party_orgs replicas as processes (each once healthy); kills what is left."""
    started: list[Replica] = []

    async def start() -> Replica:
        grpc_port, metrics_port = free_port(), free_port()
        with (logs / f"replica-{len(started)}.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "civitas.party_orgs",
                env={
                    **env,
                    "CIVITAS_PARTY_ORGS_GRPC_PORT": str(grpc_port),
                    "CIVITAS_PARTY_ORGS_METRICS_PORT": str(metrics_port),
                },
                stdout=log,
                stderr=log,
            )
        started.append(Replica(process, grpc_port, metrics_port))
        await wait_healthy(f"127.0.0.1:{grpc_port}", within=60, name="party_orgs")
        return started[-1]

    try:
        yield start
    finally:
        for replica in started:
            if replica.process.returncode is None:
                replica.process.send_signal(signal.SIGKILL)
                await replica.process.wait()


def _admin() -> list[tuple[str, str]]:
    token = TokenAuthority(SECRET).mint("staff-1", (Role.DISTRICT_ADMIN,), ("QH",))
    return [("authorization", f"Bearer {token}")]


async def _register(port: int, code: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await pb_grpc.PartyOrgsServiceStub(channel).RegisterAdminUnit(
            pb.RegisterAdminUnitRequest(code=code, name=f"unit {code}", population=100),
            metadata=_admin(),
            timeout=10,
        )


async def _units_under(port: int, parent: str) -> list[str]:
    """ListAdminUnits: read from the directory, once it has applied every event stored
    before the call (it waits for the projection's position in the shared database)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await pb_grpc.PartyOrgsServiceStub(channel).ListAdminUnits(
            pb.ListAdminUnitsRequest(parent_code=parent), metadata=_admin(), timeout=10
        )
    return sorted(unit.code for unit in reply.units)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def replica_env(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    """The settings of party_orgs replicas sharing one store and one read-model
    database: SQLite files in one var folder, or PostgreSQL schemas."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CIVITAS_VAR_DIR": str(tmp_path / "var"),
        "CIVITAS_AUTH_SECRET": SECRET,
        "CIVITAS_ANCHOR_SECONDS": "0",
    }
    schemas = []
    if request.param == "postgres":
        if not await postgres_reachable():
            missing_dependency(f"PostgreSQL at {POSTGRES_URL}")
        schemas = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(3)]
        for var, schema in zip(
            ("EVENTSTORE_URL", "READ_MODEL_URL", "VAULT_URL"), schemas, strict=True
        ):
            env[f"CIVITAS_{var}"] = f"{POSTGRES_URL}?schema={schema}"
    yield env
    for schema in schemas:
        await drop_schema(schema)


async def test_the_directory_runs_on_one_replica_and_moves_when_its_holder_is_killed(
    replica_env: dict[str, str], tmp_path: Path
) -> None:
    async with _replicas(replica_env, tmp_path) as start:
        first = await start()
        await eventually(lambda: first.holds(DIRECTORY_WORK), "the first replica to lead", 10)
        second = await start()
        await asyncio.sleep(1.5)  # the second tries the lease three times meanwhile
        assert not await second.holds(DIRECTORY_WORK)

        await _register(first.grpc_port, "QH")
        await _register(second.grpc_port, "QH-01")  # a command on the replica that does not project
        assert await _units_under(second.grpc_port, "QH") == [
            "QH-01"
        ]  # read after write, elsewhere
        await _register(second.grpc_port, "QH-02")
        assert await _units_under(first.grpc_port, "QH") == ["QH-01", "QH-02"]
        applied_by_first = await first.metric(
            "civitas_projection_events_total", projection=Directory.name
        )

        first.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await first.process.wait()
        await eventually(lambda: second.holds(DIRECTORY_WORK), "the second to lead", 10)
        took_over = time.monotonic() - killed

        await _register(second.grpc_port, "QH-03")
        assert await _units_under(second.grpc_port, "QH") == ["QH-01", "QH-02", "QH-03"]
        applied_by_second = await second.metric(
            "civitas_projection_events_total", projection=Directory.name
        )
        assert took_over < TAKEOVER_BOUND, f"the lease moved after {took_over:.1f} s"
        await _each_event_applied_once(replica_env, applied_by_first + applied_by_second)


async def _each_event_applied_once(env: dict[str, str], applied: float) -> None:
    """Every event the directory handles was applied once, by one replica or the other."""
    url = (
        env.get("CIVITAS_EVENTSTORE_URL")
        or f"sqlite:///{env['CIVITAS_VAR_DIR']}/party_orgs/events.db"
    )
    store = await open_event_store(url)
    try:
        handled = await store.read_all(limit=10_000, filter=Directory().filter)
    finally:
        await store.close()
    assert len(handled) == 4
    assert applied == len(handled)


# -- consumers on Kafka need no lease: the group assigns each partition to one ----------


def _group_members(bootstrap: str, group: str) -> int:
    """How many members a consumer group has once it is stable (0 while rebalancing)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        described = admin.describe_groups([group])[group]
        return len(described["members"]) if described["group_state"] == "Stable" else 0
    finally:
        admin.close()


@pytest.mark.kafka
async def test_two_replicas_in_one_consumer_group_never_both_receive_an_event(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    topic = TopicSpec(f"{namespace}.cases.events.v1", partitions=6)
    store = SqliteEventStore(tmp_path / "events.db")
    relay = Relay(store, kafka_bootstrap, topic)
    await relay.start()
    received: list[list[RecordedEvent]] = [[], []]
    feeds = [KafkaFeed(kafka_bootstrap, [topic.name], "index", namespace=namespace) for _ in "ab"]
    tasks = [
        asyncio.create_task(feed.run(functools.partial(_keep, seen)))
        for feed, seen in zip(feeds, received, strict=True)
    ]
    try:

        async def both_joined() -> bool:
            return await asyncio.to_thread(_group_members, kafka_bootstrap, feeds[0].group) == 2

        await eventually(both_joined, "both replicas in the group", 60, poll=0.5)
        for stream in range(40):
            for _ in range(3):
                await store.append(f"case-{stream}", [NewEvent("Noted", {})], StreamState.ANY)
        await relay.drain()

        async def all_received() -> bool:
            return sum(map(len, received)) >= 120

        await eventually(all_received, "every event by one replica or the other", 60)
        first, second = ({e.event_id for e in seen} for seen in received)
        assert first, "the group gave the first replica no partition"
        assert second, "the group gave the second replica no partition"
        assert not first & second
        assert len(first | second) == 120
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await relay.stop()
        await store.close()


async def _keep(seen: list[RecordedEvent], batch: list[RecordedEvent]) -> None:
    seen.extend(batch)


@pytest.mark.kafka
async def test_a_replica_whose_relay_refuses_its_topic_says_not_serving(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The topic exists with fewer partitions than declared: the relay refuses it each
    time it starts, and the replica that leads it stops saying SERVING."""
    namespace = f"t{uuid.uuid4().hex[:10]}"
    declared = events_spec("party_orgs", namespace)
    await ensure_topics(kafka_bootstrap, [dataclasses.replace(declared, partitions=1)])
    settings = settings_for(
        "party_orgs",
        tmp_path,
        CIVITAS_KAFKA_BOOTSTRAP=kafka_bootstrap,
        CIVITAS_KAFKA_NAMESPACE=namespace,
        CIVITAS_ANCHOR_SECONDS="0",
    )
    async with run_party_orgs(settings, port=0) as running:

        async def not_serving() -> bool:
            return not await _serving(running.server.port)

        await eventually(not_serving, "the replica with a refusing relay to say NOT_SERVING", 20)
        failing = {"work": "relay-party_orgs"}
        assert REGISTRY.get_sample_value("civitas_leased_work_failing", failing) == 1


async def test_a_read_nobody_projects_for_is_unavailable_within_its_bound_then_answers(
    tmp_path: Path,
) -> None:
    """Nobody applies the directory (its lease is held by a holder that does nothing):
    a read after a write waits its bound and answers UNAVAILABLE, saying why; once the
    lease is free, the replica takes it and the same read answers."""
    settings = settings_for(
        "party_orgs", tmp_path, CIVITAS_AUTH_SECRET=SECRET, CIVITAS_ANCHOR_SECONDS="0"
    )
    (tmp_path / "party_orgs").mkdir()
    idle = lease_at(settings.read_model_url, DIRECTORY_WORK)
    await idle.acquire()
    try:
        async with run_party_orgs(settings, port=0) as running:
            port = running.server.port
            await _register(port, "QH")
            await _register(port, "QH-01")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _units_under(port, "QH")
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "has not caught up" in (refused.value.details() or "")
            await idle.release()
            assert await _units_under(port, "QH") == ["QH-01"]
    finally:
        await idle.release()


async def test_a_lease_that_cannot_be_taken_yet_is_tried_again_not_given_up(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "not-yet"
    ran = asyncio.Event()

    async def work() -> None:
        ran.set()
        await asyncio.Event().wait()

    async with leading(FileLease(folder / "read.db.lease-relay-x", "relay-x"), work):
        await asyncio.sleep(0.5)
        assert not ran.is_set()
        folder.mkdir()
        await asyncio.wait_for(ran.wait(), 5)


@pytest.mark.postgres
async def test_a_work_whose_lease_is_lost_is_cancelled_and_runs_on_the_other_replica(
    postgres: Callable[[], str],
) -> None:
    schema = postgres()
    running: list[str] = []
    stopped: list[str] = []

    def work(replica: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            running.append(replica)
            try:
                await asyncio.Event().wait()
            finally:
                stopped.append(replica)

        return run

    lost = {"work": "relay-x"}
    lost_before = REGISTRY.get_sample_value("civitas_lease_lost_total", lost) or 0
    async with leading(PostgresLease(POSTGRES_URL, schema, "relay-x"), work("first")):
        await eventually(lambda: _truthy(running), "the first replica to run the work", 5)
        async with leading(PostgresLease(POSTGRES_URL, schema, "relay-x"), work("second")):
            await asyncio.sleep(1)
            assert running == ["first"]
            assert await _terminate_lease_sessions(schema, "relay-x") == 1
            await eventually(lambda: _truthy(stopped), "the first to stop its work", 5)
            await eventually(lambda: _truthy(running[1:]), "the other replica to run it", 5)
            assert running == ["first", "second"]
            assert stopped == ["first"]
    assert REGISTRY.get_sample_value("civitas_lease_lost_total", lost) == lost_before + 1


async def _truthy(items: list[str]) -> bool:
    return bool(items)
