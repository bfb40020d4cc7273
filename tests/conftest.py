"""Shared fixtures: event stores of every backend, built the way services build them."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from civitas.eventkit import (
    EventStore,
    InMemoryEventStore,
    ManualClock,
    MemoryDatabase,
    PostgresEventStore,
    SqliteEventStore,
    open_event_store,
)
from tests.support.default_namespace import fail_on_writes, record_before
from tests.support.kafka_auth import ADMIN, ScramBroker


def in_ci(environ: Mapping[str, str]) -> bool:
    """Any non-empty CI value (true, 1, yes, …) is CI: a missing dependency fails there,
    never skips."""
    return bool(environ.get("CI", "").strip())


IN_CI = in_ci(os.environ)
POSTGRES_URL = os.environ.get(
    "CIVITAS_TEST_POSTGRES_URL", "postgresql://civitas:civitas@127.0.0.1:5432/civitas_test"
)

KAFKA_BOOTSTRAP = os.environ.get("CIVITAS_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
KAFKA_SCRAM = ScramBroker(  # `KAFKA_AUTH=scram make kafka-up`: SASL/SCRAM and ACLs
    os.environ.get("CIVITAS_TEST_KAFKA_SCRAM_BOOTSTRAP", "127.0.0.1:9094"),
    Path(
        os.environ.get(
            "CIVITAS_TEST_KAFKA_SCRAM_SECRETS", Path(__file__).parents[1] / ".kafka/scram-9094"
        )
    ),
)

StoreFactory = Callable[..., Awaitable[EventStore]]


def missing_dependency(what: str) -> None:
    """Skip locally, but fail under CI=true: CI must never pass by not testing."""
    if IN_CI:
        pytest.fail(f"{what} is not reachable, and CI=true forbids skipping", pytrace=False)
    pytest.skip(f"{what} is not reachable")


async def postgres_reachable() -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 1, 8, 30, tzinfo=UTC))


KURRENTDB_URL = os.environ.get("CIVITAS_TEST_KURRENTDB_URL")


@pytest.fixture(
    params=[
        "sqlite",
        "memory",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("kurrentdb", marks=pytest.mark.kurrentdb),
    ]
)
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Builds stores of one backend; every store built shares one fresh database, but
    ``build(apart=True)`` opens a second one (another store altogether)."""
    opened: list[EventStore] = []
    schemas = {False: f"t_{uuid.uuid4().hex[:12]}", True: f"t_{uuid.uuid4().hex[:12]}"}
    databases = {False: MemoryDatabase(), True: MemoryDatabase()}  # the memory backend's
    if request.param == "postgres" and not await postgres_reachable():
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}")
    if request.param == "kurrentdb" and not KURRENTDB_URL:
        # The one exception to the no-skip rule: no KurrentDB server can be had on the
        # machines this project is built on (see the README); even CI skips here.
        pytest.skip("no KurrentDB server: set CIVITAS_TEST_KURRENTDB_URL to run these")

    async def build(*, apart: bool = False, **options: Any) -> EventStore:
        schema = schemas[apart]
        if request.param == "sqlite":
            name = "apart.db" if apart else "events.db"
            store: EventStore = SqliteEventStore(tmp_path / name, **options)
        elif request.param == "memory":
            store = InMemoryEventStore(databases[apart], **options)
        elif request.param == "kurrentdb":
            assert KURRENTDB_URL
            joiner = "&" if "?" in KURRENTDB_URL else "?"
            store = await open_event_store(f"{KURRENTDB_URL}{joiner}namespace={schema}", **options)
        else:
            store = await PostgresEventStore.open(POSTGRES_URL, schema=schema, **options)
        opened.append(store)
        return store

    yield build
    for store in opened:
        await store.close()
    if request.param == "postgres":
        for schema in schemas.values():
            await drop_schema(schema)


@pytest.fixture
async def store(store_factory: StoreFactory, clock: ManualClock) -> EventStore:
    return await store_factory(clock=clock)


def kafka_reachable(bootstrap: str, **client: Any) -> bool:
    """Whether a broker answers a metadata request (asked as ``client`` says: a SASL
    principal's settings)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, **client)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def pytest_collection_finish(session: pytest.Session) -> None:
    record_before(session, KAFKA_BOOTSTRAP, kafka_reachable)


def pytest_sessionfinish(session: pytest.Session) -> None:
    fail_on_writes(session, KAFKA_BOOTSTRAP)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The broker started by `make kafka-up` (`make test` starts it)."""
    if not kafka_reachable(KAFKA_BOOTSTRAP):
        missing_dependency(f"Kafka at {KAFKA_BOOTSTRAP} (run `make kafka-up`)")
    return KAFKA_BOOTSTRAP


@pytest.fixture(scope="session")
def kafka_scram() -> ScramBroker:
    """The broker with SASL/SCRAM and ACLs that `KAFKA_AUTH=scram make kafka-up` starts
    beside the plaintext one (`make test` starts both)."""
    admin = KAFKA_SCRAM.secrets / f"{ADMIN}.password"
    if not (admin.is_file() and kafka_reachable(**KAFKA_SCRAM.as_admin())):
        missing_dependency(
            f"Kafka with SASL/SCRAM at {KAFKA_SCRAM.bootstrap} "
            "(run `KAFKA_AUTH=scram make kafka-up`)"
        )
    return KAFKA_SCRAM


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def read_model_urls(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[str], str]]:
    """Makes URLs of fresh, separate read-model databases of one backend (schemas made
    beside one, named after it, as a replay's shadow, go with it)."""
    import asyncpg

    schemas: list[str] = []
    if request.param == "postgres" and not await postgres_reachable():
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}")

    def make(label: str) -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / label}.db"
        schemas.append(f"rm_{uuid.uuid4().hex[:12]}")
        return f"{POSTGRES_URL}?schema={schemas[-1]}"

    conn = await asyncpg.connect(POSTGRES_URL) if request.param == "postgres" else None
    yield make
    if conn is not None:
        for schema in schemas:
            for (beside,) in await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", schema
            ):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{beside}" CASCADE')
        await conn.close()
