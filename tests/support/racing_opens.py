"""Processes that open one SQLite store at the same moment (released by a barrier)."""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.synchronize import Barrier

from civitas.eventkit import NewEvent, SqliteEventStore, StreamState


def open_and_append(path: str, start: Barrier, n: int) -> None:
    """One process: wait for the others, open the store, append one event, close."""

    async def run() -> None:
        store = SqliteEventStore(path)
        try:
            await store.append(f"case-p{n}", [NewEvent("Opened", {"n": n})], StreamState.NO_STREAM)
        finally:
            await store.close()

    start.wait()
    asyncio.run(run())


def open_at_once(path: str, processes: int) -> list[int | None]:
    """Open ``path`` in that many fresh processes released together; their exit codes.
    They fork from a server that imported this module once (no copy of the test's event
    loop or threads, no import per process)."""
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload([__name__])
    start = forkserver.Barrier(processes)
    workers = [
        forkserver.Process(target=open_and_append, args=(path, start, n)) for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return [worker.exitcode for worker in workers]
