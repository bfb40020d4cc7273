"""``civitas up``: every service (or several replicas of each) as its own process on this
machine, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from aiokafka.errors import KafkaError as ConsumerError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka.errors import KafkaError as AdminError

from civitas import catalog
from civitas.chassis.auth import Role, TokenAuthority
from civitas.chassis.preflight import check_kafka
from civitas.chassis.settings import Locations, ensure_secret, environment, from_environment
from civitas.eventkit.files import private_dirs
from civitas.eventkit.kafka.history import ForeignHistory
from civitas.eventkit.kafka.topics import TopicMismatch
from civitas.replicas import Replica, layout, shared_store_refusal, targets
from civitas.restarts import Backoff, Child

SERVICES = catalog.names()  # in start order: insights last, as it reads the others' events
CHECK_SECONDS = 5.0
CONSOLE_TOKEN_HOURS = 8
"""How long the district admin's token ``civitas up`` prints lives: a working day."""


async def wait_healthy(address: str, within: float = 30.0, name: str = "server") -> None:
    """Wait until the gRPC health service at ``address`` says SERVING; a TimeoutError
    names the service (``name``) after ``within`` seconds. Each check may take up to
    ``CHECK_SECONDS``: a service busy catching up (ten processes starting on two cores)
    answers late, and late is still up."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = asyncio.get_running_loop().time() + within
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=CHECK_SECONDS)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{name} at {address} not healthy after {within}s")
            await asyncio.sleep(0.2)


def platform_settings(
    var_dir: Path, secret: str, postgres: str | None = None, kafka: str | None = None
) -> dict[str, str]:
    """The settings every process starts from: this process's, the token secret and the
    var folder, and with ``postgres`` every store on that server (each service in its
    own schema) and with ``kafka`` that broker. A service's own setting
    (``CIVITAS_CASES_EVENTSTORE_URL``) still wins over what these give to all."""
    env = {**environment(), "CIVITAS_AUTH_SECRET": secret, "CIVITAS_VAR_DIR": str(var_dir)}
    if postgres:
        for store in ("EVENTSTORE", "READ_MODEL", "VAULT"):
            env[f"CIVITAS_{store}_URL"] = postgres
    if kafka:
        env["CIVITAS_KAFKA_BOOTSTRAP"] = kafka
    return env


async def up(
    var_dir: Path,
    host: str = "127.0.0.1",
    *,
    ready_within: float = 30.0,
    replicas: int = 1,
    postgres: str | None = None,
    kafka: str | None = None,
) -> int:
    """Start ``replicas`` processes of every service (on ``postgres`` and ``kafka`` when
    given), print how to reach them, and keep them running until Ctrl-C or SIGTERM
    stops them all: one that exits once all were ready is started again
    (:mod:`civitas.restarts`). 1 if the platform cannot start, or a process is not
    healthy within ``ready_within`` seconds or exits before it is."""
    private_dirs(var_dir)  # 0700 (each service's stores make their folders so too)
    secret = from_environment("auth_secret") or ensure_secret(var_dir)
    env = platform_settings(var_dir, secret, postgres, kafka)
    try:
        processes = layout(env, replicas, host)
    except ValueError as impossible:
        print(f"civitas: not starting: {impossible}", file=sys.stderr)
        return 1
    for service, where in targets(processes).items():  # each finds the others' replicas
        env.setdefault(f"CIVITAS_{service.upper()}_ADDRESS", where)
    refused = shared_store_refusal(env, var_dir, replicas) or await kafka_refusal(env, var_dir)
    if refused:
        print(f"civitas: not starting: {refused}", file=sys.stderr)
        return 1
    children: list[Child] = []
    keepers: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for replica in processes:
            module = catalog.spec(replica.service).module
            children.append(
                await Child.start(replica.name, replica.address, module, replica.settings(env))
            )
        print(f"civitas: starting {', '.join(SERVICES)}", flush=True)
        if (failed := await until_ready(children, stop, ready_within)) is not None:
            return failed
        announce(list(zip(processes, children, strict=True)), secret, host)
        keepers = [asyncio.create_task(c.keep_running(stop, Backoff())) for c in children]
        await asyncio.gather(*keepers)  # each returns once stop is set
        return 0
    finally:
        for keeper in keepers:
            keeper.cancel()  # when up itself fails; a keeper that returned ignores it
        await stop_all(children)


async def until_ready(children: list[Child], stop: asyncio.Event, within: float) -> int | None:
    """Wait until every child is healthy (None), Ctrl-C (0), or one exits or is not
    healthy within ``within`` seconds (1, and why on stderr)."""
    exited = [asyncio.create_task(c.process.wait()) for c in children]
    waiting = asyncio.create_task(stop.wait())
    ready = asyncio.gather(*(wait_healthy(c.address, within, c.name) for c in children))
    first: list[asyncio.Future[Any]] = [ready, waiting, *exited]  # ready, stopped, or gone
    await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
    for task in (waiting, *exited):
        task.cancel()
    if ready.done() and not ready.exception():
        return None
    ready.cancel()
    await asyncio.gather(ready, return_exceptions=True)
    if stop.is_set():  # Ctrl-C while starting (a terminal's reaches the services too)
        return 0
    gone = [
        f"{c.name} (exit code {c.process.returncode})"
        for c in children
        if c.process.returncode is not None
    ]
    why = f"exited before it was ready: {', '.join(gone)}" if gone else str(ready.exception())
    print(f"civitas: {why}; stopping the others", file=sys.stderr)
    return 1


def announce(running: list[tuple[Replica, Child]], secret: str, host: str) -> None:
    """Print where each process serves (and its pid, for an operator's ``kill``), each
    service's target when it has replicas, an admin token and the console's address."""
    processes = [replica for replica, _ in running]
    lifetime = CONSOLE_TOKEN_HOURS * 3600
    token = TokenAuthority(secret).mint(
        "admin", [Role.DISTRICT_ADMIN], ["QH"], ttl_seconds=lifetime
    )
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + lifetime))
    for replica, child in running:
        metrics = f"metrics http://{host}:{replica.ports['metrics_port']}/metrics"
        print(f"  {replica.name:<12} grpc {replica.address}  {metrics}  pid {child.process.pid}")
    if len(processes) > len(SERVICES):
        print("\neach service's replicas as one gRPC target (civitas call --address):")
        for service, where in targets(processes).items():
            print(f"  {service:<12} {where}")
    console = next(r.ports["http_port"] for r in processes if "http_port" in r.ports)
    print(
        f"\nadmin token (district_admin, scope QH, {CONSOLE_TOKEN_HOURS} h: until {until}):"
        f"\n{token}\n"
    )
    print(f"web console: http://{host}:{console}/#token={token}")
    print(
        "  (a #fragment never reaches the server; when the token expires, open "
        f"http://{host}:{console}/#token=<a token from civitas token>)\n"
    )
    print("Load the demo district with `civitas demo`; Ctrl-C stops everything.", flush=True)


async def kafka_refusal(env: dict[str, str], var_dir: Path) -> str | None:
    """Why the platform cannot start on the Kafka ``env`` names (its topics hold
    another store's events, or differ from their declaration, or the broker does not
    answer), in words for an operator; None when it can, or when there is no Kafka."""
    keepers = [Locations.of(service, env, var_dir) for service in catalog.event_keepers()]
    bootstrap, namespace = keepers[0].kafka_bootstrap, keepers[0].kafka_namespace
    if not bootstrap:
        return None
    try:
        await check_kafka(bootstrap, namespace, keepers)
    except (ForeignHistory, TopicMismatch) as refused:
        return str(refused)
    except (AdminError, ConsumerError, OSError, TimeoutError) as unreachable:
        return f"Kafka at {bootstrap} did not answer ({unreachable!r})"
    return None


async def stop_all(children: list[Child], grace: float = 10.0) -> None:
    """SIGTERM each child, wait for a graceful exit, SIGKILL what remains; say how often
    any was restarted."""
    for child in children:
        if child.process.returncode is None:
            child.process.send_signal(signal.SIGTERM)
    for child in children:
        try:
            await asyncio.wait_for(child.process.wait(), grace)
        except TimeoutError:
            child.process.kill()
            await child.process.wait()
    restarted = ", ".join(f"{c.name} {c.restarts}" for c in children if c.restarts)
    print(f"civitas: all services stopped{f' (restarts: {restarted})' if restarted else ''}")
