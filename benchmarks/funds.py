"""Funds transfers per second on the embedded SQLite store, beside the store's own append rate.

Run with ``make bench-funds`` or ``python -m benchmarks.funds``.
Writes ``benchmarks/results/funds.json`` and prints a table.

The funds application runs in-process (``Funds`` on a ``SqliteEventStore``, WAL,
``synchronous=FULL``, group commit, and the ``SystemClock``). A transfer is
``Funds.transfer``: it debits one account and credits another, each a load and a
durable append, under the per-account locks. Every transfer moves 1 fen under its
own idempotency key. Cases, in one run and interleaved (A, B, C, … A, B, C …),
median of ``BENCH_REPEATS`` (default 5) runs of ``BENCH_SECONDS`` (default 1.5):

1. one writer: transfers one at a time from a community's special fund to another fund;
2. concurrent: 50 asyncio tasks, each transferring from its own community's fund
   (QH-01-01 … QH-05-10, allocated beforehand) to its own receiving fund, so no two tasks
   share an account;
3. contended: 50 tasks all paying out of ONE fund account, each to its own receiving fund
   (the hot account that the per-account lock serializes);
4. long history: case 1 on accounts that already hold ``BENCH_HISTORY`` (default
   5,000) entries each (booked beforehand in one append per account, which also
   writes a snapshot, as the repository does every 500 events);

and the baseline, measured beside them: the same store's raw append rate, single
events of the size of a ``Debited`` event to streams of their own, expected version
exact, with one writer and with 50 concurrent writers. A transfer is three appends (its
own record, which binds the id to the whole movement, then the debit and the credit);
the ratios compare transfers/s with appends/s / 2, the limit of the double entry
itself, so they include what the record costs.

Every run of every case (warm-up included) gets a fresh SQLite file in a fresh temp
dir, set up outside the timed part and removed afterwards; after each run the source
funds' balances are checked against the transfers counted. A load replays an
account's stream since its last snapshot, so the rate falls as the stream grows
within a run; each funds figure records how many entries its busiest account
gained per run (``entries_gained_by_busiest_account_per_run``).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from civitas.chassis.auth import Caller, Principal, Role
from civitas.eventkit import EventStore, NewEvent, SqliteEventStore, StreamState, SystemClock
from civitas.funds.application import YEARLY_ALLOCATION_FEN, Funds, special_fund_of
from civitas.funds.domain.accounts import YUAN, AccountKind, transfer_id_for

from ._common import (
    Result,
    code_state,
    concurrent_rate,
    env_float,
    env_int,
    format_table,
    interleaved,
    log,
    machine_info,
    rate_for,
    write_results,
)

SECONDS = env_float("BENCH_SECONDS", 1.5)
REPEATS = env_int("BENCH_REPEATS", 5)
HISTORY = env_int("BENCH_HISTORY", 5000)
TASKS = 50
YEAR = SystemClock().now().year  # funds allocates only the open fiscal year
AMOUNT_FEN = 1
MEMO = "bench transfer"
STREET_THRESHOLD_FEN = 20_000 * YUAN  # the service's default; transfers do not use it
CALLER = Caller(Principal("bench", frozenset({Role.DISTRICT_ADMIN}), ("QH",)))

#: Per variant, the most entries one account gained in each run (warm-up first).
GAINED: dict[str, list[int]] = {}

TRANSFERS = "transfers/s (higher is better)"
APPENDS = "events/s (higher is better)"
#: Communities QH-01-01 … QH-05-10, one special fund each (case 2).
COMMUNITIES = [
    f"QH-{street:02d}-{community:02d}" for street in range(1, 6) for community in range(1, 11)
]


# -- a fresh ledger per run -------------------------------------------------------


@asynccontextmanager
async def fresh_store() -> AsyncIterator[SqliteEventStore]:
    """A new SQLite event store in a new temp dir, closed and removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="civitas-bench-funds-"))
    store = SqliteEventStore(tmp / "funds.db")
    try:
        yield store
    finally:
        await store.close()
        shutil.rmtree(tmp, ignore_errors=True)


def receiver(n: int) -> str:
    return f"fund:QH:r{n}"


async def open_receivers(funds: Funds, count: int) -> list[str]:
    """Funds the transfers pay into (a transfer never pays a payee: only an approved
    expenditure does)."""
    await asyncio.gather(
        *(
            funds.open_account(CALLER, AccountKind.FUND, "QH", f"r{n}", "receiving fund")
            for n in range(count)
        )
    )
    return [receiver(n) for n in range(count)]


async def allocate(funds: Funds, communities: list[str]) -> list[str]:
    """Each community's special fund, given its yearly 200,000 yuan from the district budget."""
    for community in communities:  # one at a time: each draws on the one district budget
        await funds.allocate_year(CALLER, community, YEAR, 0)
    return [special_fund_of(c) for c in communities]


async def book_history(funds: Funds, source: str, target: str, entries: int) -> None:
    """``entries`` past transfers on both accounts, saved in one append each (the
    repository writes a snapshot, as it would have on the way)."""
    now = SystemClock().now()
    paying = await funds.accounts.get(source)
    receiving = await funds.accounts.get(target)
    for n in range(entries):
        transfer_id = transfer_id_for(f"history-{n}")
        paying.debit(transfer_id, AMOUNT_FEN, target, now, MEMO)
        receiving.credit(transfer_id, AMOUNT_FEN, source, now, MEMO)
    await funds.accounts.save(paying, CALLER.metadata)
    await funds.accounts.save(receiving, CALLER.metadata)


class Transferrer:
    """Transfers 1 fen per call from ``source`` to ``target``, a fresh key each time."""

    def __init__(self, funds: Funds, source: str, target: str, name: str) -> None:
        self.funds = funds
        self.source = source
        self.target = target
        self.name = name
        self.done = 0

    async def step(self) -> int:
        await self.funds.transfer(
            CALLER, f"bench-{self.name}-{self.done}", self.source, self.target, AMOUNT_FEN, MEMO
        )
        self.done += 1
        return 1


async def check_paid(funds: Funds, fund: str, paid: int, before_fen: int) -> None:
    """The fund's balance went down by exactly the transfers counted."""
    balance = (await funds.accounts.get(fund)).balance_fen
    expected = before_fen - paid * AMOUNT_FEN
    if balance != expected:
        raise AssertionError(f"{fund}: balance {balance} fen, expected {expected}")


# -- the funds cases ------------------------------------------------------------------


async def one_writer(seconds: float, history: int = 0) -> float:
    async with fresh_store() as store:
        funds = Funds(store, SystemClock(), STREET_THRESHOLD_FEN)
        [fund] = await allocate(funds, COMMUNITIES[:1])
        [target] = await open_receivers(funds, 1)
        if history:
            await book_history(funds, fund, target, history)
        before = (await funds.accounts.get(fund)).balance_fen
        writer = Transferrer(funds, fund, target, "one")
        rate = await rate_for(seconds, writer.step)
        await check_paid(funds, fund, writer.done, before)
    GAINED.setdefault("transfer_history" if history else "transfer_one", []).append(writer.done)
    return rate


async def concurrent(seconds: float) -> float:
    async with fresh_store() as store:
        funds = Funds(store, SystemClock(), STREET_THRESHOLD_FEN)
        sources = await allocate(funds, COMMUNITIES[:TASKS])
        targets = await open_receivers(funds, TASKS)
        writers = [
            Transferrer(funds, s, t, str(n))
            for n, (s, t) in enumerate(zip(sources, targets, strict=True))
        ]
        rate = await concurrent_rate(seconds, [w.step for w in writers])
        for w in writers:
            await check_paid(funds, w.source, w.done, YEARLY_ALLOCATION_FEN)
    GAINED.setdefault("transfer_50", []).append(max(w.done for w in writers))
    return rate


async def contended(seconds: float) -> float:
    async with fresh_store() as store:
        funds = Funds(store, SystemClock(), STREET_THRESHOLD_FEN)
        [fund] = await allocate(funds, COMMUNITIES[:1])
        targets = await open_receivers(funds, TASKS)
        writers = [Transferrer(funds, fund, t, str(n)) for n, t in enumerate(targets)]
        rate = await concurrent_rate(seconds, [w.step for w in writers])
        paid = sum(w.done for w in writers)
        await check_paid(funds, fund, paid, YEARLY_ALLOCATION_FEN)
    GAINED.setdefault("transfer_hot", []).append(paid)
    return rate


# -- the baseline: the store's own appends ---------------------------------------------


def debit_like_data(n: int) -> dict[str, Any]:
    """The data of a ``Debited`` event (about 180 bytes of JSON)."""
    return {
        "transfer_id": str(transfer_id_for(f"bench-raw-{n}")),
        "amount_fen": AMOUNT_FEN,
        "to_account": receiver(n % TASKS),
        "booked_at": datetime.now(UTC).isoformat(),
        "memo": MEMO,
    }


class Appender:
    """One event per call to a stream of its own, expected version exact."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.stream = f"bench-{uuid.uuid4().hex}"
        self.expected: StreamState | int = StreamState.NO_STREAM
        self.n = 0

    async def step(self) -> int:
        event = NewEvent(type="X", data=debit_like_data(self.n), actor=CALLER.principal.subject)
        result = await self.store.append(self.stream, [event], self.expected)
        self.expected = result.stream_version
        self.n += 1
        return 1


async def append_one_writer(seconds: float) -> float:
    async with fresh_store() as store:
        return await rate_for(seconds, Appender(store).step)


async def append_concurrent(seconds: float) -> float:
    async with fresh_store() as store:
        return await concurrent_rate(seconds, [Appender(store).step for _ in range(TASKS)])


# -- the run ----------------------------------------------------------------------


def halved(samples: list[float]) -> list[float]:
    """Appends/s / 2: the transfers/s the store could carry at two appends each."""
    return [s / 2 for s in samples]


def gained(variant: str) -> dict[str, Any]:
    """How long the busiest account's stream grew in each timed run (warm-up left out):
    loads replay the stream since the last snapshot, so the rate falls as it grows."""
    return {"entries_gained_by_busiest_account_per_run": GAINED.get(variant, [])[1:]}


def results_of(samples: dict[str, list[float]]) -> list[Result]:
    store_text = "SqliteEventStore (WAL, synchronous=FULL, group commit), fresh file per run"
    half_one = (
        "half the raw append rate, one writer (eventstore.append.one_writer / 2: a "
        "transfer is two appends), same run, interleaved"
    )
    half_50 = (
        "half the raw append rate, 50 concurrent writers (eventstore.append.concurrent_50_writers"
        " / 2: a transfer is two appends), same run, interleaved"
    )
    history_note = (
        f"both accounts start with {HISTORY:,} entries each (and the snapshot the repository "
        "wrote when they were booked)"
    )
    return [
        Result(
            "funds.transfer.one_writer",
            samples["transfer_one"],
            TRANSFERS,
            half_one,
            halved(samples["append_one"]),
            note="one task, one transfer at a time between two funds; "
            "ratio = transfers/s / (one-writer appends/s / 2)",
            extra=gained("transfer_one"),
        ),
        Result(
            "funds.transfer.concurrent_50_pairs",
            samples["transfer_50"],
            TRANSFERS,
            half_50,
            halved(samples["append_50"]),
            note="50 tasks, each between its own community fund and its own receiving fund; "
            "ratio = transfers/s / (50-writer appends/s / 2)",
            extra=gained("transfer_50"),
        ),
        Result(
            "funds.transfer.concurrent_50_pairs.vs_one_writer",
            samples["transfer_50"],
            TRANSFERS,
            "funds.transfer.one_writer (same run, interleaved)",
            samples["transfer_one"],
            note="ratio = 50 independent pairs / one writer (what concurrency buys)",
        ),
        Result(
            "funds.transfer.contended_one_fund_50_tasks",
            samples["transfer_hot"],
            TRANSFERS,
            half_one,
            halved(samples["append_one"]),
            note="50 tasks all paying out of one fund, each to its own receiving fund; the "
            "fund's lock serializes them, so the limit is one writer's: ratio = transfers/s / "
            "(one-writer appends/s / 2)",
            extra=gained("transfer_hot"),
        ),
        Result(
            "funds.transfer.contended_one_fund_50_tasks.vs_one_writer",
            samples["transfer_hot"],
            TRANSFERS,
            "funds.transfer.one_writer (same run, interleaved)",
            samples["transfer_one"],
            note="ratio = 50 tasks on one hot fund / one writer",
        ),
        Result(
            f"funds.transfer.one_writer.history_{HISTORY}",
            samples["transfer_history"],
            TRANSFERS,
            half_one,
            halved(samples["append_one"]),
            note=f"case one_writer, but {history_note}; "
            "ratio = transfers/s / (one-writer appends/s / 2)",
            extra=gained("transfer_history"),
        ),
        Result(
            f"funds.transfer.one_writer.history_{HISTORY}.vs_fresh",
            samples["transfer_history"],
            TRANSFERS,
            "funds.transfer.one_writer, fresh accounts (same run, interleaved)",
            samples["transfer_one"],
            note="ratio = long history / fresh accounts (the cost of loading long streams)",
        ),
        Result(
            "eventstore.append.one_writer",
            samples["append_one"],
            APPENDS,
            note=f"baseline: {store_text}; one event per append, Debited-sized data, "
            "one stream, expected version exact",
        ),
        Result(
            "eventstore.append.concurrent_50_writers",
            samples["append_50"],
            APPENDS,
            note=f"baseline: {store_text}; 50 tasks, one stream each, one event per append, "
            "Debited-sized data, expected version exact",
        ),
    ]


async def run() -> list[Result]:
    variants: dict[str, Callable[[float], Awaitable[float]]] = {
        "transfer_one": one_writer,
        "transfer_50": concurrent,
        "transfer_hot": contended,
        "transfer_history": lambda s: one_writer(s, HISTORY),
        "append_one": append_one_writer,
        "append_50": append_concurrent,
    }
    log(f"funds: {len(variants)} variants, {REPEATS} x {SECONDS}s each, interleaved")
    samples = await interleaved(variants, repeats=REPEATS, seconds=SECONDS, label="funds.")
    return results_of(samples)


def main() -> None:
    started = time.perf_counter()
    code = code_state("services/civitas/funds", "services/civitas/eventkit", "benchmarks")
    results = asyncio.run(run())
    path = write_results(
        "funds",
        machine_info(),
        results,
        code=code,
        method={
            "seconds_per_measurement": SECONDS,
            "repeats": REPEATS,
            "statistic": "median",
            "interleaved": True,
            "fresh_store_per_run": True,
            "tasks": TASKS,
            "history_entries": HISTORY,
            "amount_fen_per_transfer": AMOUNT_FEN,
        },
    )
    print(format_table(results))
    log(f"wrote {path} in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
