"""Runs the balances projection to the head of a store; the crash test kills it."""

from __future__ import annotations

import asyncio
import sys

from civitas.eventkit import ProjectionRunner, SqliteEventStore, StoreFeed, create_read_model_engine
from tests.support.accounts import BalancesProjection


async def main(store_path: str, read_model_url: str) -> None:
    store = SqliteEventStore(store_path)
    engine = create_read_model_engine(read_model_url)
    try:
        await ProjectionRunner(BalancesProjection(), StoreFeed(store, 10), engine).catch_up()
    finally:
        engine.dispose()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
