"""Helpers for tests of consumers: waiting, lost checkpoints, redelivery over Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import sqlalchemy as sa

from civitas.eventkit import EventStore
from civitas.eventkit.process import ProcessManagerRunner


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, seconds: float = 10, poll: float = 0.05
) -> None:
    """Wait until ``check`` says yes; fail naming ``what`` after ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(poll)


def forget_progress(runner: ProcessManagerRunner) -> None:
    """Make a process manager see every event again, as after a lost checkpoint."""
    with runner.engine.begin() as conn:
        for table in ("projection_positions", "projection_streams"):
            conn.execute(
                sa.text(f"DELETE FROM {table} WHERE projection = :n"), {"n": runner.manager.name}
            )


async def publish_again(store: EventStore, service: str, bootstrap: str, namespace: str) -> None:
    """Every event of ``store`` on the service's topic a second time, at new offsets, as
    a relay that lost its checkpoint publishes them."""
    from civitas.eventkit.kafka import Relay, TopicSpec, events_topic

    relay = Relay(store, bootstrap, TopicSpec(events_topic(service, namespace), partitions=6))
    await relay.start()
    await store.save_checkpoint(relay.checkpoint_name, 0)
    await relay.drain()
    await relay.stop()
