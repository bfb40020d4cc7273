"""`civitas replay`: a read model rebuilt beside the live one from the store or from
Kafka, compared, and swapped in while the service goes on answering queries."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from civitas.chassis.auth import Role, TokenAuthority
from civitas.eventkit import (
    EventStore,
    ManualClock,
    ProjectionRunner,
    RecordedEvent,
    StoreFeed,
    create_read_model_engine,
    open_event_store,
)
from civitas.eventkit.projection import PROJECTION_LOCK_SPACE
from civitas.funds.bootstrap import run_funds
from civitas.funds.ledger import Ledger
from civitas.funds.v1 import funds_pb2 as pb
from civitas.funds.v1 import funds_pb2_grpc as pb_grpc
from civitas.replay import (
    TableDiff,
    compare,
    lower_position,
    reset_shadow,
    shadow_url,
    swap,
    swap_in,
)
from tests.support.cases_platform import SECRET, settings_for
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


def funds_settings(read_model_urls: Callable[[str], str]) -> dict[str, str]:
    """funds' read model on the backend under test (its events stay in SQLite)."""
    return {"CIVITAS_FUNDS_READ_MODEL_URL": read_model_urls("funds_read")}


def damage(read_model_url: str, fen: int) -> None:
    engine = create_read_model_engine(read_model_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE ledger_accounts SET balance_fen = balance_fen + :fen "
                "WHERE account_id = :account"
            ),
            {"fen": fen, "account": FUND},
        )
    engine.dispose()


def transfer(key: str, fen: int) -> pb.TransferRequest:
    return pb.TransferRequest(
        idempotency_key=key,
        from_account=FUND,
        to_account="fund:QH-01-02:special",
        amount_fen=fen,
        memo="调剂",
    )


async def test_a_damaged_read_model_is_found_and_swapped_while_queries_go_on(
    tmp_path: Path, clock: ManualClock, read_model_urls: Callable[[str], str]
) -> None:
    extra = funds_settings(read_model_urls)
    async with funds_with_books(tmp_path, clock, extra) as stub:
        right = await balances(stub)
        same_rc, same = await civitas(tmp_path, extra, "replay", "funds_ledger")
        damage(extra["CIVITAS_FUNDS_READ_MODEL_URL"], 5)
        damaged = await balances(stub)
        found_rc, found = await civitas(tmp_path, extra, "replay", "funds_ledger")
        answered: list[dict[str, int]] = []
        paid_meanwhile = 0
        swapping = asyncio.create_task(civitas(tmp_path, extra, "replay", "funds_ledger", "--swap"))
        while not swapping.done():  # queries are answered, and money moves, during it
            answered.append(await balances(stub))
            paid_meanwhile += 1
            await stub.Transfer(transfer(f"meanwhile-{paid_meanwhile}", 1), metadata=FINANCE)
        swap_rc, swapped = await swapping
        mended = await balances(stub)
        # and the live projection goes on after the swap
        await stub.Transfer(transfer("after-swap", 1), metadata=FINANCE)
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
        right = await balances(stub)
        for _ in range(60):  # until the relay has published every event
            rc, out = await civitas(tmp_path, kafka, "replay", "funds_ledger", "--source", "kafka")
            if rc == 0:
                break
            await asyncio.sleep(0.5)
        damage(settings_for("funds", tmp_path).read_model_url, 5)
        await stub.Transfer(transfer("not-yet-on-kafka-maybe", 3), metadata=FINANCE)
        swap_rc, swapped = await civitas(
            tmp_path, kafka, "replay", "funds_ledger", "--source", "kafka", "--swap"
        )
        mended = await balances(stub)

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
    assert swap_rc == 0, swapped
    assert "swapped: funds_ledger now holds the replayed rows" in swapped
    assert mended[FUND] == right[FUND] - 3


async def test_a_swap_applies_what_came_after_the_replay_before_a_runner_goes_on(
    tmp_path: Path, clock: ManualClock, read_model_urls: Callable[[str], str]
) -> None:
    extra = funds_settings(read_model_urls)
    async with funds_with_books(tmp_path, clock, extra) as stub:
        before = await balances(stub)  # the service's own ledger has caught up
        origin = settings_for("funds", tmp_path, **extra)
        live = create_read_model_engine(origin.read_model_url)
        shadow_db = shadow_url(origin.read_model_url, "funds_ledger")
        reset_shadow(shadow_db)
        shadow = create_read_model_engine(shadow_db)
        store = await open_event_store(origin.eventstore_url)
        replayed_to = await ProjectionRunner(Ledger(), StoreFeed(store), shadow).rebuild()
        for n, fen in enumerate((7, 11)):  # applied by the service after the replay
            await stub.Transfer(transfer(f"late-{n}", fen), metadata=FINANCE)
        late = await balances(stub)
        newest = (await store.read_all(after=replayed_to))[-2:]  # the last transfer's events
        # A runner of the live model with the newest events in hand, as the service's
        # own may be when the swap comes: it must wait for the swap, then pass them over.
        racer = threading.Thread(
            target=asyncio.run,
            args=(ProjectionRunner(Ledger(), Delivering(newest), live).catch_up(),),
        )
        loop = asyncio.get_running_loop()
        held_during_catch_up: list[bool] = []
        racer_waited: list[bool] = []

        def events_after(position: int) -> list[RecordedEvent]:
            held_during_catch_up.append(projection_held(origin.read_model_url))
            if not racer_waited:
                racer.start()
                racer.join(0.5)
                racer_waited.append(racer.is_alive())
            read = store.read_all(after=position, filter=Ledger().filter)
            return asyncio.run_coroutine_threadsafe(read, loop).result()

        reached = await asyncio.to_thread(swap, live, shadow_db, Ledger(), events_after)
        await asyncio.to_thread(racer.join)
        differences = await differences_from_a_fresh_replay(origin.read_model_url, store)
        kept = await balances(stub)
        await store.close()
        for engine in (live, shadow):
            engine.dispose()

    assert held_during_catch_up
    assert all(held_during_catch_up)  # one transaction, one lock
    assert racer_waited == [True]
    assert reached == newest[-1].position
    assert all(d.same for d in differences)
    assert kept == late
    assert kept[FUND] == before[FUND] - 7 - 11


async def test_a_shadow_with_a_gap_above_the_relay_checkpoint_is_completed_by_the_swap(
    tmp_path: Path, clock: ManualClock, read_model_urls: Callable[[str], str]
) -> None:
    """From Kafka, one partition may be ahead of another: the shadow then holds a later
    event without an earlier one of another stream. Set back to the relay's checkpoint,
    the swap's catch-up fills the gap."""
    extra = funds_settings(read_model_urls)
    async with funds_with_books(tmp_path, clock, extra) as stub:
        origin = settings_for("funds", tmp_path, **extra)
        store = await open_event_store(origin.eventstore_url)
        history = await store.read_all(after=0, filter=Ledger().filter)
        checkpoint = history[-6].position  # the relay has acknowledged up to here
        partition_behind = {history[-4].stream_id}  # one stream's later events not in
        on_topic = [
            e for e in history if e.position <= checkpoint or e.stream_id not in partition_behind
        ]
        shadow_db = shadow_url(origin.read_model_url, "funds_ledger")
        reset_shadow(shadow_db)
        shadow = create_read_model_engine(shadow_db)
        await ProjectionRunner(Ledger(), Delivering(on_topic), shadow).rebuild()
        await asyncio.to_thread(lower_position, shadow, "funds_ledger", checkpoint)
        damage(origin.read_model_url, 5)
        live = create_read_model_engine(origin.read_model_url)
        reached = await swap_in(Ledger(), shadow_db, shadow, live, store)
        differences = await differences_from_a_fresh_replay(origin.read_model_url, store)
        mended = await balances(stub)
        await store.close()
        for engine in (live, shadow):
            engine.dispose()

    assert len(on_topic) < len(history)  # the shadow had a gap
    assert reached == history[-1].position
    assert all(d.same for d in differences)
    assert sum(mended.values()) == 0


class Delivering:
    """A feed that delivers the given events once."""

    def __init__(self, events: list[RecordedEvent]) -> None:
        self.events = events

    async def read(self, **_: object) -> list[RecordedEvent]:
        batch, self.events = self.events, []
        return batch

    async def head(self) -> int:
        return 0

    async def run(self, *_: object, **__: object) -> None:
        raise NotImplementedError


def projection_held(read_model_url: str) -> bool:
    """Whether another connection holds funds_ledger's write lock now."""
    engine = create_read_model_engine(read_model_url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA busy_timeout=0")
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                except sa.exc.OperationalError as locked:
                    return "locked" in str(locked)
                conn.rollback()
                return False
            free = conn.scalar(
                sa.select(
                    sa.func.pg_try_advisory_xact_lock(
                        PROJECTION_LOCK_SPACE, sa.func.hashtext("funds_ledger")
                    )
                )
            )
            conn.rollback()
            return not free
    finally:
        engine.dispose()


async def differences_from_a_fresh_replay(
    read_model_url: str, store: EventStore
) -> list[TableDiff]:
    fresh_db = shadow_url(read_model_url, "fresh")
    reset_shadow(fresh_db)
    fresh = create_read_model_engine(fresh_db)
    live = create_read_model_engine(read_model_url)
    try:
        await ProjectionRunner(Ledger(), StoreFeed(store), fresh).rebuild()
        return compare(live, fresh, Ledger.tables)
    finally:
        fresh.dispose()
        live.dispose()
