"""`civitas replay`: a read model rebuilt beside the live one from the store or from
Kafka, compared, and swapped in while the service goes on answering queries."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from civitas.chassis.auth import Role, TokenAuthority
from civitas.eventkit import ManualClock, RecordedEvent, open_event_store
from civitas.funds.bootstrap import run_funds
from civitas.funds.v1 import funds_pb2 as pb
from civitas.funds.v1 import funds_pb2_grpc as pb_grpc
from tests.integration.test_cases_grpc import SECRET, settings_for
from tests.support.platform import run_cli

ROOT = Path(__file__).resolve().parents[2]
FINANCE = [
    ("authorization", f"Bearer {TokenAuthority(SECRET).mint('f', ['finance_officer'], ['QH'])}")
]
AUDITOR = [("authorization", f"Bearer {TokenAuthority(SECRET).mint('a', [Role.AUDITOR], ['QH'])}")]
FUND = "fund:QH-01-01:special"


async def civitas(tmp_path: Path, extra: dict[str, str], *args: str) -> tuple[int, str]:
    return await run_cli([*args, "--var", str(tmp_path)], SECRET, extra)


@contextlib.asynccontextmanager
async def funds_with_books(
    tmp_path: Path, clock: ManualClock, extra: dict[str, str]
) -> AsyncIterator[pb_grpc.FundsServiceStub]:
    async with (
        run_funds(settings_for("funds", tmp_path, **extra), clock=clock, port=0) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}") as channel,
    ):
        stub = pb_grpc.FundsServiceStub(channel)
        for community in ("QH-01-01", "QH-01-02"):
            await stub.AllocateYear(
                pb.AllocateYearRequest(community_code=community, year=2026), metadata=FINANCE
            )
        for n in range(5):
            await stub.Transfer(
                pb.TransferRequest(
                    idempotency_key=f"t-{n}",
                    from_account=FUND,
                    to_account="fund:QH-01-02:special",
                    amount_fen=100 + n,
                    memo="调剂",
                ),
                metadata=FINANCE,
            )
        yield stub


async def balances(stub: pb_grpc.FundsServiceStub) -> dict[str, int]:
    trial = await stub.GetTrialBalance(pb.GetTrialBalanceRequest(), metadata=AUDITOR)
    return {a.account_id: a.balance_fen for a in trial.accounts}


async def test_a_damaged_read_model_is_found_and_swapped_while_queries_go_on(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with funds_with_books(tmp_path, clock, {}) as stub:
        right = await balances(stub)
        same_rc, same = await civitas(tmp_path, {}, "replay", "funds_ledger")
        with sqlite3.connect(tmp_path / "funds" / "read.db") as conn:
            conn.execute(
                "UPDATE ledger_accounts SET balance_fen = balance_fen + 5 WHERE account_id = ?",
                (FUND,),
            )
        damaged = await balances(stub)
        found_rc, found = await civitas(tmp_path, {}, "replay", "funds_ledger")
        answered: list[dict[str, int]] = []
        paid_meanwhile = 0
        swapping = asyncio.create_task(civitas(tmp_path, {}, "replay", "funds_ledger", "--swap"))
        while not swapping.done():  # queries are answered, and money moves, during it
            answered.append(await balances(stub))
            paid_meanwhile += 1
            await stub.Transfer(
                pb.TransferRequest(
                    idempotency_key=f"meanwhile-{paid_meanwhile}",
                    from_account=FUND,
                    to_account="fund:QH-01-02:special",
                    amount_fen=1,
                    memo="调剂",
                ),
                metadata=FINANCE,
            )
        swap_rc, swapped = await swapping
        mended = await balances(stub)
        await stub.Transfer(  # and the live projection goes on after the swap
            pb.TransferRequest(
                idempotency_key="after-swap",
                from_account=FUND,
                to_account="fund:QH-01-02:special",
                amount_fen=1,
                memo="调剂",
            ),
            metadata=FINANCE,
        )
        after = await balances(stub)

    assert (same_rc, found_rc, swap_rc) == (0, 1, 0)
    assert "the live read model equals the replay" in same
    assert damaged[FUND] == right[FUND] + 5
    assert "ledger_accounts: 3 live rows, 3 replayed: 1 only live, 1 only replayed" in found
    assert "ledger_reservations: 0 live rows, 0 replayed: same" in found
    assert "swapped: funds_ledger now holds the replayed rows" in swapped
    assert answered
    assert mended[FUND] == right[FUND] - paid_meanwhile  # nothing the service applied is lost
    assert after[FUND] == right[FUND] - paid_meanwhile - 1
    assert sum(after.values()) == 0


@pytest.mark.kafka
async def test_a_replay_from_kafka_reads_the_topic_from_the_beginning(
    tmp_path: Path, clock: ManualClock, kafka_bootstrap: str
) -> None:
    kafka = {
        "CIVITAS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CIVITAS_KAFKA_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
    }
    async with funds_with_books(tmp_path, clock, kafka) as stub:
        await balances(stub)
        for _ in range(60):  # until the relay has published every event
            rc, out = await civitas(tmp_path, kafka, "replay", "funds_ledger", "--source", "kafka")
            if rc == 0:
                break
            await asyncio.sleep(0.5)

    nowhere = {**kafka, "CIVITAS_KAFKA_NAMESPACE": "nosuchnamespace"}
    missing_rc, missing = await civitas(
        tmp_path, nowhere, "replay", "funds_ledger", "--source", "kafka", "--swap"
    )

    assert rc == 0, out
    assert "replay" in out
    assert missing_rc == 2
    assert "no such topic: nosuchnamespace.funds.events.v1" in missing
    assert "the live read model equals the replay" in out
    assert "ledger_accounts: 3 live rows, 3 replayed: same" in out


async def test_a_swap_applies_what_came_after_the_replay_before_a_runner_goes_on(
    tmp_path: Path, clock: ManualClock
) -> None:
    from civitas.eventkit import ProjectionRunner, StoreFeed, create_read_model_engine
    from civitas.eventkit.projection import apply_tracked, hold_projection
    from civitas.funds.ledger import Ledger
    from civitas.replay import compare, settings_of, shadow_url, swap

    async with funds_with_books(tmp_path, clock, {}) as stub:
        before = await balances(stub)  # the service's own ledger has caught up
        origin = settings_of("funds", tmp_path)
        live = create_read_model_engine(origin.read_model_url)
        shadow_db = shadow_url(origin.read_model_url, "funds_ledger")
        shadow = create_read_model_engine(shadow_db)
        store = await open_event_store(origin.eventstore_url)
        replayed_to = await ProjectionRunner(Ledger(), StoreFeed(store), shadow).rebuild()
        for n, amount in enumerate((7, 11)):  # applied by the service after the replay
            await stub.Transfer(
                pb.TransferRequest(
                    idempotency_key=f"late-{n}",
                    from_account=FUND,
                    to_account="fund:QH-01-02:special",
                    amount_fen=amount,
                    memo="调剂",
                ),
                metadata=FINANCE,
            )
        late = await balances(stub)
        newest = (await store.read_all(after=replayed_to))[-2:]  # the last transfer's events
        loop = asyncio.get_running_loop()
        racer_applied: list[int] = []

        def deliver_newest() -> None:  # a runner with the newest events in hand
            with live.begin() as conn:
                hold_projection(conn, "funds_ledger")
                racer_applied.append(apply_tracked(conn, Ledger(), newest))

        racer = threading.Thread(target=deliver_newest)
        racer_waited: list[bool] = []

        def events_after(position: int) -> list[RecordedEvent]:
            if not racer.is_alive() and not racer_waited:  # the swap's rows are in
                racer.start()
                racer.join(0.5)
                racer_waited.append(racer.is_alive())
            read = store.read_all(after=position, filter=Ledger().filter)
            return asyncio.run_coroutine_threadsafe(read, loop).result()

        reached = await asyncio.to_thread(swap, live, shadow_db, Ledger(), events_after)
        await asyncio.to_thread(racer.join)
        fresh = create_read_model_engine(shadow_url(origin.read_model_url, "fresh"))
        await ProjectionRunner(Ledger(), StoreFeed(store), fresh).rebuild()
        differences = compare(live, fresh, Ledger.tables)
        kept = await balances(stub)
        await store.close()
        for engine in (live, shadow, fresh):
            engine.dispose()

    assert racer_waited == [True]  # it waited for the swap's transaction
    assert racer_applied == [0]  # and found the swap had applied its events
    assert reached == newest[-1].position
    assert all(d.same for d in differences)
    assert kept == late
    assert kept[FUND] == before[FUND] - 7 - 11
