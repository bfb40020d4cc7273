"""A typical party_orgs command over real gRPC, beside a bare grpc.aio echo server.

Run with ``make bench-grpc`` or ``python -m benchmarks.grpc_commands``. Writes
``benchmarks/results/grpc.json`` and prints a table.

Two servers, each its own process on this machine:

- party_orgs as it runs in production (``python -m civitas.party_orgs``): the
  chassis interceptor (JWT check, correlation id, error mapping, Prometheus
  metrics), the application service, and the embedded SQLite event store (WAL,
  ``synchronous=FULL``, group commit) in a fresh temp dir, with its directory
  projection following the store;
- the baseline, ``benchmarks.grpc_echo``: a bare grpc.aio server with one unary
  bytes-in/bytes-out method, no interceptors, no auth, no store, echoing a payload
  as large as the command's request;
- party_orgs again, with tracing on (``benchmarks.grpc_traced_party_orgs``): the
  SDK's tracer provider, every span sampled (the call's, the append's, the directory
  projection's batch), batched and handed to an exporter that drops them: tracing's
  cost inside the service, against the first party_orgs as the baseline.

The command is RecordCardActivity on members admitted beforehand (``BENCH_GRPC_MEMBERS``,
default 2000, in full branches of ``BENCH_GRPC_BRANCH_SIZE``, default 50, the most a
branch holds: one grid branch, then branches under an organ general branch),
round-robin, each call a new activity: every call loads the member and its org,
appends one event durably and answers with the member (so members' histories grow
during the run; the file records how far).

This process is the load generator: one channel per server, ``BENCH_GRPC_CONCURRENCY``
(default 32) calls in flight, and also one call in flight for the unloaded latency.
The six variants (echo, command and traced command, at 32 and at 1 in flight) run interleaved,
``BENCH_REPEATS`` (default 5) rounds of ``BENCH_SECONDS`` (default 3) each after a
warm-up; every figure is the median of the rounds. Both servers get the same
``authorization`` metadata. The client shares the two cores with the server it
drives (the other server is idle meanwhile); its CPU share is recorded.

``BENCH_GRPC_PROFILE=1`` instead runs party_orgs under cProfile (every thread, from
the end of the setup on), drives only the command at full concurrency, and prints
where the server's time goes; it writes no results file.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from tests.support.platform import free_port

from civitas.chassis.auth import Role, TokenAuthority
from civitas.party_orgs.v1 import party_orgs_pb2 as pb
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as pb_grpc
from civitas.runner import wait_healthy

from . import grpc_echo
from ._common import (
    Result,
    Target,
    code_state,
    env_float,
    env_int,
    format_table,
    interleaved,
    log,
    machine_info,
    write_results,
)

SECONDS = env_float("BENCH_SECONDS", 3.0)
REPEATS = env_int("BENCH_REPEATS", 5)
WARMUP = env_float("BENCH_WARMUP_SECONDS", 1.0)
CONCURRENCY = env_int("BENCH_GRPC_CONCURRENCY", 32)
MEMBERS = env_int("BENCH_GRPC_MEMBERS", 2000)
PROFILE = bool(os.environ.get("BENCH_GRPC_PROFILE"))
PROFILE_SECONDS = env_float("BENCH_GRPC_PROFILE_SECONDS", 10.0)
BRANCH_SIZE = min(50, env_int("BENCH_GRPC_BRANCH_SIZE", 50))  # 50: the most a branch holds
ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# -- server processes -----------------------------------------------------------


@dataclass
class ServerProcess:
    """A server started by this benchmark, its address and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    address: str
    log_path: Path

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the process, all threads (Linux /proc); None elsewhere."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_process(
    name: str, args: list[str], env: dict[str, str], tmp: Path, port: int
) -> ServerProcess:
    log_path = tmp / f"{name}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(name, process, f"127.0.0.1:{port}", log_path)


async def wait_echo(server: ServerProcess, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = channel.unary_unary(
            grpc_echo.METHOD, request_serializer=None, response_deserializer=None
        )
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call(b"ping", timeout=1)
                return
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the echo server did not start:\n{server.log_tail()}")
            await asyncio.sleep(0.1)


# -- the district the commands work on ------------------------------------------


async def set_up_members(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> list[str]:
    """Units, orgs and ``MEMBERS`` members in full branches; the member ids."""
    stub = pb_grpc.PartyOrgsServiceStub(channel)
    for code, name in (
        ("QH", "青湖区"),
        ("QH-01", "大光街道"),
        ("QH-01-01", "光明社区"),
        ("QH-01-01-G01", "光明社区第一网格"),
    ):
        await stub.RegisterAdminUnit(
            pb.RegisterAdminUnitRequest(code=code, name=name), metadata=metadata
        )

    async def found(kind: pb.PartyOrgKind.ValueType, name: str, unit: str, parent: str = "") -> str:
        reply = await stub.FoundPartyOrg(
            pb.FoundPartyOrgRequest(kind=kind, name=name, parent_id=parent, unit_code=unit),
            metadata=metadata,
        )
        return str(reply.org.org_id)

    K = pb.PartyOrgKind
    street = await found(K.PARTY_ORG_KIND_STREET_WORKING_COMMITTEE, "大光街道大工委", "QH-01")
    community = await found(
        K.PARTY_ORG_KIND_COMMUNITY_COMMITTEE, "光明社区大党委", "QH-01-01", street
    )
    branches = [
        await found(K.PARTY_ORG_KIND_GRID_BRANCH, "第一网格支部", "QH-01-01-G01", community)
    ]
    needed = -(-MEMBERS // BRANCH_SIZE)
    if needed > 1:
        organ = await found(K.PARTY_ORG_KIND_ORGAN_GENERAL_BRANCH, "区机关总支", "QH")
        for n in range(1, needed):
            branches.append(await found(K.PARTY_ORG_KIND_BRANCH, f"机关第{n}支部", "QH", organ))

    async def fill(index: int, org_id: str) -> list[str]:
        ids = []
        first = index * BRANCH_SIZE
        for number in range(first, min(first + BRANCH_SIZE, MEMBERS)):
            reply = await stub.AdmitMember(
                pb.AdmitMemberRequest(
                    member_number=f"BENCH{number:06d}", name=f"党员{number}", org_id=org_id
                ),
                metadata=metadata,
            )
            ids.append(str(reply.member.member_id))
        return ids

    # One task per branch (admits to one branch would only conflict on its roster).
    per_branch = await asyncio.gather(*(fill(i, org) for i, org in enumerate(branches)))
    return [member for ids in per_branch for member in ids]


# -- load -------------------------------------------------------------------------


@dataclass
class Round:
    """One measured round of one variant."""

    calls: int
    seconds: float
    latencies: list[float]
    server_cpu: float | None
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    @property
    def server_cpu_ms_per_call(self) -> float | None:
        return None if self.server_cpu is None else 1000 * self.server_cpu / self.calls


@dataclass
class Variant:
    """A call and how many of it to keep in flight; every run appends a :class:`Round`."""

    call: Callable[[int], Awaitable[Any]]
    concurrency: int
    server: ServerProcess
    rounds: list[Round] = field(default_factory=list)

    async def __call__(self, seconds: float) -> float:
        latencies: list[float] = []
        counter = itertools.count()
        call = self.call

        async def worker() -> None:
            while time.perf_counter() < deadline:
                i = next(counter)
                sent = time.perf_counter()
                await call(i)
                latencies.append(time.perf_counter() - sent)

        cpu_before = self.server.cpu_seconds()
        client_before = time.process_time()
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        elapsed = time.perf_counter() - start
        cpu_after = self.server.cpu_seconds()
        server_cpu = (
            cpu_after - cpu_before if cpu_after is not None and cpu_before is not None else None
        )
        self.rounds.append(
            Round(
                len(latencies), elapsed, latencies, server_cpu, time.process_time() - client_before
            )
        )
        return self.rounds[-1].rate

    @property
    def measured(self) -> list[Round]:
        return self.rounds[1:]  # the first run is interleaved()'s warm-up


class CommandCalls:
    """RecordCardActivity on the members, round-robin, each call a new activity."""

    def __init__(self, channel: grpc.aio.Channel, members: list[str], metadata: Any) -> None:
        self.rpc = pb_grpc.PartyOrgsServiceStub(channel).RecordCardActivity
        self.members = members
        self.metadata = metadata
        self.sequence = itertools.count()
        self.occurred_at = Timestamp()
        self.occurred_at.FromDatetime(datetime.now(UTC) - timedelta(days=1))
        self.run = uuid.uuid4().hex[:8]
        self.calls = 0
        self.last_reply_bytes = 0

    def request(self, n: int) -> pb.RecordCardActivityRequest:
        return pb.RecordCardActivityRequest(
            member_id=self.members[n % len(self.members)],
            activity=pb.CardActivity(
                activity_id=f"bench-{self.run}-{n}",
                kind=pb.CardActivityKind.CARD_ACTIVITY_KIND_MEETING,
                description="支部主题党日",
                tenths_of_hours=10,
                occurred_at=self.occurred_at,
            ),
        )

    async def __call__(self, _: int) -> None:
        n = next(self.sequence)  # across rounds: every activity id is new
        reply = await self.rpc(self.request(n), metadata=self.metadata)
        self.calls += 1
        if n % 1000 == 0:
            self.last_reply_bytes = reply.ByteSize()


def latency_rounds(rounds: list[Round], q: float) -> list[float]:
    return [r.percentile_ms(q) for r in rounds]


# -- the run ----------------------------------------------------------------------


async def measure(tmp: Path) -> tuple[list[Result], dict[str, Any]]:
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    token = TokenAuthority(secret).mint("bench", [Role.DISTRICT_ADMIN], ["QH"])
    metadata = (("authorization", f"Bearer {token}"),)
    grpc_port, metrics_port, echo_port = free_port(), free_port(), free_port()
    # Only our settings: a CIVITAS_* variable of the caller's shell (another store URL,
    # a Kafka bootstrap that would start the relay) would change what is measured.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CIVITAS_")},
        "CIVITAS_VAR_DIR": str(tmp / "var"),
        "CIVITAS_AUTH_SECRET": secret,
        "CIVITAS_PARTY_ORGS_GRPC_PORT": str(grpc_port),
        "CIVITAS_PARTY_ORGS_METRICS_PORT": str(metrics_port),
    }
    if PROFILE:
        (tmp / "profile").mkdir()
        args = ["-m", "benchmarks.grpc_profiled_party_orgs", str(tmp / "profile")]
    else:
        args = ["-m", "civitas.party_orgs"]
    servers: list[ServerProcess] = []
    try:
        party_orgs = start_process("party_orgs", args, env, tmp, grpc_port)
        servers.append(party_orgs)
        echo = None
        if not PROFILE:
            echo = start_process(
                "echo",
                ["-m", "benchmarks.grpc_echo", str(echo_port)],
                dict(os.environ),
                tmp,
                echo_port,
            )
            servers.append(echo)
            await wait_echo(echo)
        traced = party_orgs
        if not PROFILE:
            traced = start_traced(env, tmp)
            servers.append(traced)
        for server in {party_orgs.name: party_orgs, traced.name: traced}.values():
            try:
                await wait_healthy(server.address)
            except TimeoutError:
                raise RuntimeError(f"{server.name} did not start:\n{server.log_tail()}") from None
        async with (
            grpc.aio.insecure_channel(party_orgs.address) as command_channel,
            grpc.aio.insecure_channel(echo.address if echo else party_orgs.address) as echo_channel,
            grpc.aio.insecure_channel(traced.address) as traced_channel,
        ):
            started = time.perf_counter()
            members = await set_up_members(command_channel, metadata)
            setup_seconds = time.perf_counter() - started
            log(f"set up {len(members)} members in {setup_seconds:.1f}s")
            command = CommandCalls(command_channel, members, metadata)
            request_bytes = command.request(10**9).ByteSize()
            if PROFILE:
                await profile_run(party_orgs, command)
                return [], {}
            assert echo is not None
            payload = os.urandom(request_bytes)
            echo_rpc = echo_channel.unary_unary(
                grpc_echo.METHOD, request_serializer=None, response_deserializer=None
            )

            async def echo_call(_: int) -> None:
                await echo_rpc(payload, metadata=metadata)

            variants = {
                f"echo.c{CONCURRENCY}": Variant(echo_call, CONCURRENCY, echo),
                f"command.c{CONCURRENCY}": Variant(command, CONCURRENCY, party_orgs),
                "echo.c1": Variant(echo_call, 1, echo),
                "command.c1": Variant(command, 1, party_orgs),
            }
            members = await set_up_members(traced_channel, metadata)
            traced_command = CommandCalls(traced_channel, members, metadata)
            variants[f"traced.c{CONCURRENCY}"] = Variant(traced_command, CONCURRENCY, traced)
            variants["traced.c1"] = Variant(traced_command, 1, traced)
            await interleaved(
                variants, repeats=REPEATS, seconds=SECONDS, warmup_seconds=WARMUP, label=""
            )
        details = {
            "setup_seconds": round(setup_seconds, 1),
            "members": len(members),
            "members_per_branch": BRANCH_SIZE,
            "request_bytes": request_bytes,
            "command_reply_bytes_at_end": command.last_reply_bytes,
            "activities_per_member_at_end": round(command.calls / len(members), 1),
        }
        return build_results(variants, request_bytes) + tracing_results(variants), details
    finally:
        for server in servers:
            server.stop()


def start_traced(env: dict[str, str], tmp: Path) -> ServerProcess:
    """party_orgs with tracing on, in a store of its own, its spans dropped once batched."""
    port = free_port()
    traced_env = {
        **env,
        "CIVITAS_VAR_DIR": str(tmp / "var-traced"),
        "CIVITAS_PARTY_ORGS_GRPC_PORT": str(port),
        "CIVITAS_PARTY_ORGS_METRICS_PORT": str(free_port()),
    }
    args = ["-m", "benchmarks.grpc_traced_party_orgs"]
    return start_process("party_orgs_traced", args, traced_env, tmp, port)


def tracing_results(variants: dict[str, Variant]) -> list[Result]:
    """The command with tracing on against the same command with it off."""
    results = []
    for in_flight in (CONCURRENCY, 1):
        off, on = (
            variants[f"command.c{in_flight}"].measured,
            variants[f"traced.c{in_flight}"].measured,
        )
        baseline = f"the same command on party_orgs with tracing off, {in_flight} in flight"
        results.append(
            Result(
                f"record_card_activity.c{in_flight}.tracing_on.throughput",
                [r.rate for r in on],
                "calls/s (higher is better)",
                baseline=baseline,
                baseline_samples=[r.rate for r in off],
                target=Target(on="ratio", op=">=", threshold=0.9),
            )
        )
    off, on = (
        variants[f"command.c{CONCURRENCY}"].measured,
        variants[f"traced.c{CONCURRENCY}"].measured,
    )
    if all(r.server_cpu_ms_per_call is not None for r in off + on):
        results.append(
            Result(
                f"record_card_activity.c{CONCURRENCY}.tracing_on.server_cpu_per_call",
                [1000 * r.server_cpu_ms_per_call for r in on if r.server_cpu_ms_per_call],
                "µs of server CPU (user+sys, all threads) per call (lower is better)",
                baseline=f"party_orgs with tracing off, {CONCURRENCY} in flight",
                baseline_samples=[
                    1000 * r.server_cpu_ms_per_call for r in off if r.server_cpu_ms_per_call
                ],
            )
        )
    return results


def build_results(variants: dict[str, Variant], request_bytes: int) -> list[Result]:
    c = CONCURRENCY
    echo, command = variants[f"echo.c{c}"].measured, variants[f"command.c{c}"].measured
    echo1, command1 = variants["echo.c1"].measured, variants["command.c1"].measured
    echo_name = (
        f"bare grpc.aio echo server in its own process (no interceptors, no auth, no store), "
        f"{request_bytes}-byte payload, same client"
    )
    results = [
        Result(
            f"record_card_activity.c{c}.throughput",
            [r.rate for r in command],
            "calls/s (higher is better)",
            baseline=f"{echo_name}, {c} in flight",
            baseline_samples=[r.rate for r in echo],
            target=Target(on="ratio", op=">=", threshold=0.5),
        ),
    ]
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        results.append(
            Result(
                f"record_card_activity.c{c}.latency_{label}",
                latency_rounds(command, q),
                "ms (lower is better)",
                baseline=f"{echo_name}, {c} in flight",
                baseline_samples=latency_rounds(echo, q),
            )
        )
    if all(r.server_cpu is not None for r in command + echo):
        results.append(
            Result(
                f"record_card_activity.c{c}.server_cpu_per_call",
                [1000 * r.server_cpu_ms_per_call for r in command if r.server_cpu_ms_per_call],
                "µs of server CPU (user+sys, all threads) per call (lower is better)",
                baseline=f"{echo_name}, {c} in flight",
                baseline_samples=[
                    1000 * r.server_cpu_ms_per_call for r in echo if r.server_cpu_ms_per_call
                ],
            )
        )
        results.append(
            Result(
                f"record_card_activity.c{c}.server_cpu_busy",
                [100 * r.server_cpu / r.seconds for r in command if r.server_cpu is not None],
                "% of one core used by the server process (200 would be both cores; context)",
                baseline=f"the echo server, {c} in flight",
                baseline_samples=[
                    100 * r.server_cpu / r.seconds for r in echo if r.server_cpu is not None
                ],
            )
        )
    results.append(
        Result(
            f"record_card_activity.c{c}.client_cpu_busy",
            [100 * r.client_cpu / r.seconds for r in command],
            "% of one core used by the load generator (context: is the client the limit?)",
            baseline=f"the same client driving the echo server, {c} in flight",
            baseline_samples=[100 * r.client_cpu / r.seconds for r in echo],
        )
    )
    results.append(
        Result(
            "record_card_activity.c1.throughput",
            [r.rate for r in command1],
            "calls/s (higher is better)",
            baseline=f"{echo_name}, 1 in flight",
            baseline_samples=[r.rate for r in echo1],
        )
    )
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        results.append(
            Result(
                f"record_card_activity.c1.latency_{label}",
                latency_rounds(command1, q),
                "ms (lower is better)",
                baseline=f"{echo_name}, 1 in flight",
                baseline_samples=latency_rounds(echo1, q),
            )
        )
    return results


# -- profile mode -------------------------------------------------------------------


async def profile_run(party_orgs: ServerProcess, command: CommandCalls) -> None:
    variant = Variant(command, CONCURRENCY, party_orgs)
    await variant(WARMUP)
    party_orgs.process.send_signal(signal.SIGUSR1)
    await asyncio.sleep(0.2)
    rate = await variant(PROFILE_SECONDS)
    last = variant.rounds[-1]
    log(
        f"under the profiler: {rate:,.0f} calls/s, p50 {last.percentile_ms(0.5):.1f} ms, "
        f"server CPU {last.server_cpu_ms_per_call or 0:.2f} ms/call, {last.calls} calls"
    )
    party_orgs.stop(grace=60)
    out = party_orgs.log_path.parent / "profile"
    shutil.copy(party_orgs.log_path, out / "party_orgs.log")
    for name in ("main", "threads"):
        path = out / f"{name}.pstats"
        if not path.exists():
            log(f"no {path.name}")
            continue
        stats = pstats.Stats(str(path), stream=sys.stderr)
        stats.strip_dirs()
        log(f"\n==== {name} thread(s): by own time, per {last.calls} calls ====")
        stats.sort_stats("tottime").print_stats(35)
        log(f"\n==== {name} thread(s): by cumulative time ====")
        stats.sort_stats("cumulative").print_stats(45)
    if (out / "threads.txt").exists():
        log("profiled threads: " + (out / "threads.txt").read_text().replace("\n", " "))
    keep = os.environ.get("BENCH_GRPC_PROFILE_KEEP")
    if keep:
        shutil.copytree(out, keep, dirs_exist_ok=True)
        log(f"profiles copied to {keep}")


# -- main -------------------------------------------------------------------------


def main() -> None:
    started = time.perf_counter()
    code = code_state(
        "services/civitas/chassis",
        "services/civitas/eventkit",
        "services/civitas/party_orgs",
        "benchmarks",
    )
    tmp = Path(tempfile.mkdtemp(prefix="civitas-bench-grpc-"))
    try:
        results, details = asyncio.run(measure(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if PROFILE:
        log(f"profile run done in {time.perf_counter() - started:.0f}s (no results written)")
        return
    machine = machine_info(
        grpcio=version("grpcio"),
        protobuf=version("protobuf"),
    )
    path = write_results(
        "grpc",
        machine,
        results,
        code=code,
        method={
            "seconds_per_measurement": SECONDS,
            "repeats": REPEATS,
            "warmup_seconds": WARMUP,
            "statistic": "median",
            "interleaved": True,
            "in_flight": [CONCURRENCY, 1],
            "channels": "one per server, one client process (this one)",
            "party_orgs": "python -m civitas.party_orgs, embedded SQLite store in a temp dir, "
            "no Kafka relay (no CIVITAS_KAFKA_BOOTSTRAP)",
            "command": "RecordCardActivity, MEETING, 1.0 h, new activity id each call, "
            "members round-robin",
            **details,
        },
    )
    print(format_table(results))
    log(f"wrote {path.relative_to(ROOT)} in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
