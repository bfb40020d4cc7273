"""Runs the balances projection to the head of a store; the crash test kills it.

With ``CRASH_AT_EVENT=N`` in the environment, the process kills itself (SIGKILL, as
the kernel or an operator would) while it applies the Nth event, inside the batch's
open transaction: a crash mid-way that does not depend on when a test gets to it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import sqlalchemy as sa

from civitas.eventkit import (
    ProjectionRunner,
    RecordedEvent,
    SqliteEventStore,
    StoreFeed,
    create_read_model_engine,
)
from tests.support.accounts import BalancesProjection


class CrashingBalances(BalancesProjection):
    def __init__(self, crash_at: int) -> None:
        self.crash_at = crash_at
        self.seen = 0

    def apply(self, event: RecordedEvent, conn: sa.Connection) -> None:
        self.seen += 1
        if self.seen == self.crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
        super().apply(event, conn)


async def main(store_path: str, read_model_url: str) -> None:
    store = SqliteEventStore(store_path)
    engine = create_read_model_engine(read_model_url)
    crash_at = int(os.environ.get("CRASH_AT_EVENT", "0"))
    projection = CrashingBalances(crash_at) if crash_at else BalancesProjection()
    try:
        await ProjectionRunner(projection, StoreFeed(store, 10), engine).catch_up()
    finally:
        engine.dispose()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
