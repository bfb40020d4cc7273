"""A relay whose run was cancelled (its lease lost) relays again when run anew in the
same process (the lease taken back). It used to stop its producer on the way out and
then fail every second with ProducerClosed, holding the lease and publishing nothing:
the failover test's relays stalled so after PostgreSQL restarted."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import pytest

from civitas.eventkit import NewEvent, SqliteEventStore, StreamState
from civitas.eventkit.kafka import Relay, TopicSpec
from tests.support.processes import eventually, messages_on

pytestmark = pytest.mark.kafka


async def relay_until_published(relay: Relay, store: SqliteEventStore, count: int) -> None:
    """Run ``relay`` until its checkpoint has passed ``count`` events, then cancel it."""
    running = asyncio.create_task(relay.run())

    async def published() -> bool:
        return await store.load_checkpoint(relay.checkpoint_name) >= count

    try:
        await eventually(published, f"{count} events relayed", 30)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_a_relay_run_again_after_a_cancel_publishes_what_came_meanwhile(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    topic = TopicSpec(f"t{uuid.uuid4().hex[:10]}.relay-again.events.v1", partitions=1)
    relay = Relay(store, kafka_bootstrap, topic, retry_delay=0.1)
    await store.append("case-1", [NewEvent("Noted", {"n": 1})], StreamState.NO_STREAM)
    await relay_until_published(relay, store, 1)
    await store.append("case-1", [NewEvent("Noted", {"n": 2})], 0)
    await relay_until_published(relay, store, 2)
    messages = await messages_on(kafka_bootstrap, topic.name)
    await store.close()
    assert len(messages) == 2
