"""Failover under load: two replicas of every service on a PostgreSQL server and a Kafka
broker of the test's own, steady load through the gRPC API, and while it runs: a
replica of each service SIGKILLed, then the replica holding each service's leases, then
the broker, then PostgreSQL (each started again). Asserted afterwards: nothing
answered is lost, nothing is applied twice (retried or not), no retry is refused as
already done (FAILED_PRECONDITION), the ledger sums to zero, every read model equals its
replay, every event is on its topic. Measured and printed, not asserted yet because
they have not held on every run (docs/failover.md says why): the errors clients saw
by code (DEADLINE_EXCEEDED for a call in flight on a killed replica) and how long they
lasted against the bound."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from civitas.funds.v1 import funds_pb2 as fpb
from tests.conftest import missing_dependency
from tests.support.failover import (
    NAMESPACE,
    FailoverPlatform,
    Replica,
    Replicas,
    failover_platform,
    postgres_bin,
)
from tests.support.failover_checks import (
    ledger_problems,
    locations,
    read_stores,
    replay_problems,
    settled,
    stored_once,
    topic_problems,
)
from tests.support.failover_load import Clients, Load, run_load
from tests.support.platform import ROOT, SECRET

# 5 to 7 minutes measured on the 2-core machine under a load average of 20-35 (other
# test runs beside it): the suite's 300 s would cut it short on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.kafka, pytest.mark.timeout(600)]

RECOVERY_BOUND_SECONDS = 20.0
"""The bound stated (printed against, not asserted yet): the longest a client may go
without an answer, from its first failed attempt at a command to the attempt answered.
Measured: 4.1 s and 1.4 s at most on two runs; 30.8 s and 30.4 s on two others, the
30 s a request id's claim outlives a replica SIGKILLed while running its command."""
# A command whose replica dies after its events are stored but before its request id's
# row is written is run again on the retry: it appends the ids its first run did and
# sees the aggregate as that run did (civitas.eventkit.requested), so it is stored once
# and answered OK, once the dead replica's claim has passed its 30 s. Asserted: nothing
# twice, no FAILED_PRECONDITION.
CALM_SECONDS = 6.0  # between faults: the platform recovers, the load goes on


class Phases:
    """How long each part of the test took, for its log."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.took: list[str] = []

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.took.append(f"{name} {now - self.last:.0f} s")
        self.last = now

    def __str__(self) -> str:
        return ", ".join(self.took)


@dataclass
class Fault:
    name: str
    start: float
    end: float = -1.0  # when what was killed is back (healthy, or answering)


async def restarted(replicas: Replicas, killed: list[Replica]) -> None:
    await asyncio.sleep(1)  # a supervisor's backoff
    await asyncio.gather(*(replicas.start(r) for r in killed))


async def inject(platform: FailoverPlatform, load: Load) -> list[Fault]:
    """The faults, one after the other, each once the one before has healed."""
    replicas = platform.replicas
    faults: list[Fault] = []

    async def fault(
        name: str, kill: Callable[[], Awaitable[None]], heal: Callable[[], Awaitable[None]]
    ) -> None:
        await asyncio.sleep(CALM_SECONDS)
        faults.append(Fault(name, load.at()))
        await kill()
        await heal()
        faults[-1].end = load.at()

    holders: dict[str, Replica] = {}

    async def kill_holders() -> None:
        holders.update(await replicas.lease_holders())
        assert set(holders) >= {"party_orgs", "cases", "volunteers", "funds"}, holders
        await asyncio.gather(*(replicas.kill(r) for r in holders.values()))

    others = [next(r for r in rs if r.index == 1) for rs in replicas.replicas.values()]

    async def kill_others() -> None:
        await asyncio.gather(*(replicas.kill(r) for r in others))

    await fault("a replica of each service", kill_others, lambda: restarted(replicas, others))
    await fault(
        "the lease holder of each service",
        kill_holders,
        lambda: restarted(replicas, list(holders.values())),
    )
    await fault("the Kafka broker", platform.kafka.crash, platform.kafka.start)
    await fault("PostgreSQL", platform.postgres.crash, platform.postgres.start)
    await asyncio.sleep(CALM_SECONDS)
    return faults


@pytest.fixture
def dependencies() -> None:
    if postgres_bin() is None:
        missing_dependency("PostgreSQL's server programs (/usr/lib/postgresql)")
    if not (ROOT / ".kafka" / "libs").is_dir():
        missing_dependency("the Kafka jars (run `make kafka-up`)")


async def test_failover_under_load_loses_and_doubles_nothing(
    tmp_path: Path, dependencies: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    phases = Phases()
    async with failover_platform(tmp_path) as platform:
        phases.mark("started")
        replicas = platform.replicas
        for name, value in replicas.settings().items():  # for civitas replay, run here
            monkeypatch.setenv(name, value)
        clients = Clients({s: replicas.target(s) for s in replicas.replicas}, SECRET)
        try:
            await clients.seed()
            load, stop = Load(), asyncio.Event()
            running = asyncio.create_task(run_load(load, clients, stop))
            faults = await inject(platform, load)
            stop.set()
            await running
            phases.mark("load")
            where = locations(replicas.settings())
            await settled(where, NAMESPACE, 120)
            phases.mark("settled")
            balance = await clients.funds.GetTrialBalance(fpb.GetTrialBalanceRequest())
        finally:
            await clients.close()
        stores = await read_stores(where)
        on_topics, published_again = await topic_problems(
            stores, platform.kafka.bootstrap, NAMESPACE
        )
        replays = await replay_problems(tmp_path / "var")
        phases.mark("checked")

    longest = max((w.seconds for w in load.windows), default=0.0)
    twice = stored_once(stores, load)
    codes = Counter(f.code for f in load.failures)
    late = [
        x
        for x in load.failures
        if not any(f.start <= x.at <= f.end + RECOVERY_BOUND_SECONDS for f in faults)
    ]
    print(  # the figures, for the log of a run; what is not asserted yet, measured here
        f"\n{len(load.answered)} commands answered, failed attempts by code {dict(codes)}, "
        f"{len(load.windows)} error windows, the longest {longest:.1f} s "
        f"(bound {RECOVERY_BOUND_SECONDS:.0f} s), {len(late)} failures outside a fault; "
        f"{len(load.refused)} retries refused; "
        f"{published_again} messages published twice; faults: "
        + ", ".join(f"{f.name} {f.start:.0f}-{f.end:.0f} s" for f in faults)
        + f"; phases: {phases}"
    )
    assert {a.method for a in load.answered} >= {
        "RegisterCase",
        "DispatchCase",
        "Transfer",
        "ImportActivity",
    }
    assert twice == []
    assert codes["FAILED_PRECONDITION"] == 0
    assert ledger_problems(stores["funds"]) == []
    assert balance.total_fen == 0
    assert replays == []
    assert on_topics == []
