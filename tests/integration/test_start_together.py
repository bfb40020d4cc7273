"""Every service started at the same moment against fresh databases, several times
(#19): schemas and tables are made once, under a lock, and none of the processes fails.

On PostgreSQL as the README sets it up, in a new database each round: every service's
read models in ONE shared schema, each event store and vault in a schema of its
service's own (a URL without ``?schema=``). On SQLite: a fresh var folder.
Before #19, one fresh start in ten stopped with ``UniqueViolation ...
pg_type_typname_nsp_index (projection_positions)``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from civitas import catalog
from civitas.chassis.topics import platform_topics
from civitas.eventkit.kafka.topics import check_topics, delete_topics, ensure_topics
from civitas.runner import wait_healthy
from tests.conftest import POSTGRES_URL, missing_dependency, postgres_reachable
from tests.support.platform import ROOT, SECRET, free_port
from tests.support.replicated_platform import fresh_database

ROUNDS = 3
READY_WITHIN = 120.0  # five processes at once: a minute each when the two cores are shared
SHARED_TABLES = {  # made in the one read-model schema by several services at once
    "projection_positions",
    "projection_streams",
    "parked_events",
    "read_model_versions",
    "request_log",
    "case_index",
    "directory_units",
    "ledger_accounts",
    "insights_cases",
}

pytestmark = pytest.mark.slow


@dataclass
class Started:
    """One service's process, where it answers, and where it writes its output."""

    service: str
    process: asyncio.subprocess.Process
    address: str
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


def settings(var: Path, urls: Mapping[str, str]) -> dict[str, str]:
    """Every service on free ports, with the store URLs ``urls`` gives, and no Kafka
    (the embedded store feeds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVITAS_")}
    env |= {"PYTHONPATH": str(ROOT), "CIVITAS_VAR_DIR": str(var), "CIVITAS_AUTH_SECRET": SECRET}
    for service in catalog.names():
        grpc_port, prefix = free_port(), f"CIVITAS_{service.upper()}"
        env |= {f"{prefix}_GRPC_PORT": str(grpc_port), f"{prefix}_METRICS_PORT": str(free_port())}
        env[f"{prefix}_ADDRESS"] = f"127.0.0.1:{grpc_port}"
    env["CIVITAS_INSIGHTS_HTTP_PORT"] = str(free_port())
    return env | dict(urls)


def postgres_urls(database: str) -> dict[str, str]:
    """The README's PostgreSQL setup: one shared read-model schema; each service's event
    store and vault in its own schema (the URL names none)."""
    return {
        "CIVITAS_EVENTSTORE_URL": database,
        "CIVITAS_READ_MODEL_URL": f"{database}?schema=read_models",
        "CIVITAS_VAULT_URL": database,
    }


@contextlib.asynccontextmanager
async def every_service_at_once(env: dict[str, str], logs: Path) -> AsyncIterator[list[Started]]:
    """Start every service's process at the same moment; stop them all (SIGTERM, then
    SIGKILL after 30 s) on the way out."""
    await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)

    async def start(service: str) -> Started:
        log = logs / f"{service}.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", f"civitas.{service}", env=env, stdout=out, stderr=out
            )
        return Started(service, process, env[f"CIVITAS_{service.upper()}_ADDRESS"], log)

    started = await asyncio.gather(*(start(service) for service in catalog.names()))
    try:
        yield list(started)
    finally:
        await asyncio.gather(*(stop(each) for each in started))


async def stop(started: Started) -> None:
    if started.process.returncode is None:
        started.process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(started.process.wait(), 30)
    except TimeoutError:
        started.process.kill()
        await started.process.wait()


async def ready_or_exited(started: Started) -> str | None:
    """None once the service is healthy; what went wrong if it exits or never is."""
    healthy = asyncio.ensure_future(wait_healthy(started.address, READY_WITHIN, started.service))
    exited = asyncio.ensure_future(started.process.wait())
    await asyncio.wait({healthy, exited}, return_when=asyncio.FIRST_COMPLETED)
    exited.cancel()
    if exited.done() and not exited.cancelled():
        healthy.cancel()
        return f"{started.service} exited ({started.process.returncode}):\n{started.tail()}"
    if healthy.exception() is not None:
        return f"{started.service}: {healthy.exception()}\n{started.tail()}"
    return None


async def start_round(env: dict[str, str], logs: Path) -> None:
    """One fresh start: every service ready, and still running once all are."""
    async with every_service_at_once(env, logs) as started:
        problems = [p for p in await asyncio.gather(*map(ready_or_exited, started)) if p]
        assert problems == [], "\n\n".join(problems)
        ended = [each.service for each in started if each.process.returncode is not None]
        assert ended == [], "\n\n".join(each.tail() for each in started)


async def tables_in(conn: asyncpg.Connection, schema: str) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
    return {row["tablename"] for row in rows}


@pytest.mark.postgres
async def test_every_service_starts_at_once_against_a_fresh_postgresql(tmp_path: Path) -> None:
    if not await postgres_reachable():
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}")
    for number in range(ROUNDS):
        async with fresh_database() as database:
            env = settings(tmp_path / f"var{number}", postgres_urls(database))
            await start_round(env, tmp_path / f"logs{number}")
            conn = await asyncpg.connect(database)
            try:
                shared = await tables_in(conn, "read_models")
            finally:
                await conn.close()
        assert shared >= SHARED_TABLES, SHARED_TABLES - shared


async def test_every_service_starts_at_once_in_a_fresh_sqlite_folder(tmp_path: Path) -> None:
    for number in range(ROUNDS):
        var = tmp_path / f"var{number}"
        await start_round(settings(var, {}), tmp_path / f"logs{number}")
        made = {path.parent.name for path in var.glob("*/read.db")}
        assert made == set(catalog.names())


@pytest.mark.kafka
async def test_publishers_making_the_same_topics_at_once_all_succeed(kafka_bootstrap: str) -> None:
    # every relay, anchorer and dead-letter publisher of a fresh cluster, at once: a
    # topic another made first (TopicAlreadyExists) is made, and checked like the rest
    declared = platform_topics(f"st-{uuid.uuid4().hex[:10]}")
    try:
        outcomes = await asyncio.gather(
            *(ensure_topics(kafka_bootstrap, declared) for _ in range(6)), return_exceptions=True
        )
        assert [o for o in outcomes if o is not None] == []
        assert await check_topics(kafka_bootstrap, declared) == []  # all there, as declared
    finally:
        await delete_topics(kafka_bootstrap, [topic.name for topic in declared])
