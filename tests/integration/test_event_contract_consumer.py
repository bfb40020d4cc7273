"""A consumer written by someone else can read the topics: every event type of every
service, published by the relay, read with a plain Kafka client and checked against
the vendored schema files and the AsyncAPI document alone, validates."""

from __future__ import annotations

import ast
import asyncio
import json
import shutil
import sys
import uuid
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import pytest

from civitas import catalog
from civitas.contracts import EVENTS
from civitas.eventkit import SqliteEventStore
from civitas.eventkit.kafka import Relay, TopicSpec, events_topic
from tests.support import plain_consumer
from tests.support.every_event import HISTORIES, store_history

pytestmark = pytest.mark.kafka

NAMESPACE = f"t{uuid.uuid4().hex[:10]}"  # never the default namespace
CONSUMER = Path(plain_consumer.__file__)
ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


async def publish_every_event(bootstrap: str, tmp_path: Path) -> dict[str, int]:
    """Each service's history in a store of its own, relayed to its topic in NAMESPACE."""
    published = {}
    for service, history in HISTORIES.items():
        store = SqliteEventStore(tmp_path / f"{service}.db")
        published[service] = await store_history(store, history())
        relay = Relay(store, bootstrap, TopicSpec(events_topic(service, NAMESPACE), partitions=3))
        await relay.start()
        await relay.drain()
        await relay.stop()
        await store.close()
    return published


def imported_modules(source: str) -> set[str]:
    """The modules a source file imports, by name."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module or "")
    return modules


def test_the_plain_consumer_imports_no_civitas_code() -> None:
    imported = imported_modules(CONSUMER.read_text())

    assert {"kafka", "jsonschema"} <= imported
    assert not {m for m in imported if m.partition(".")[0] in {"civitas", "tests"}}


async def read_as_another_team(*arguments: str, folder: Path) -> dict[str, Any]:
    """Run the plain consumer, copied out of this repository, and return its report."""
    consumer = shutil.copy(CONSUMER, folder / "consumer.py")
    process = await asyncio.create_subprocess_exec(
        sys.executable, consumer, *arguments, cwd=folder, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out)
    return report


async def test_every_event_type_read_with_a_plain_client_validates_against_the_vendored_schemas(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    published = await publish_every_event(kafka_bootstrap, tmp_path)
    vendored = shutil.copytree(EVENTS, tmp_path / "vendored")
    document = shutil.copy(ASYNCAPI, tmp_path / "asyncapi.json")
    topics = {service: events_topic(service, NAMESPACE) for service in HISTORIES}

    report = await read_as_another_team(
        kafka_bootstrap, str(vendored), str(document), *topics.values(), folder=tmp_path
    )

    assert report["problems"] == []
    assert report["civitas_modules"] == []
    assert report["messages"] == sum(published.values())
    assert set(HISTORIES) == set(catalog.event_keepers())
    for service, topic in topics.items():
        declared = {cls.event_type for cls in catalog.spec(service).event_classes()}
        assert set(report["seen"][topic]) == declared, service
