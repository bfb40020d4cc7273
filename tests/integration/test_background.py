"""Background loops never die silently: they log and start again."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from civitas.chassis.service import keep_running
from civitas.eventkit import SqliteEventStore
from civitas.eventkit.kafka import Relay, TopicSpec


async def test_failed_work_is_started_again_until_it_succeeds() -> None:
    attempts = []

    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    await asyncio.wait_for(keep_running("flaky", flaky, pause=0.01), 5)

    assert len(attempts) == 3


async def test_a_relay_started_before_its_broker_keeps_trying(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "events.db")
    relay = Relay(store, "127.0.0.1:1", TopicSpec("civitas.nobody.events.v1"), retry_delay=0.1)
    task = asyncio.create_task(relay.run())

    await asyncio.sleep(3)

    assert not task.done(), "the relay gave up while the broker was away"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await store.close()
