"""``civitas up``: every service as its own process on this machine, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aiokafka.errors import KafkaError as ConsumerError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka.errors import KafkaError as AdminError

from civitas import catalog
from civitas.chassis.auth import Role, TokenAuthority
from civitas.chassis.preflight import check_kafka
from civitas.chassis.settings import (
    INSIGHTS_HTTP_PORT,
    Locations,
    ensure_secret,
    environment,
    from_environment,
    own_setting,
)
from civitas.eventkit.files import private_dirs
from civitas.eventkit.kafka.history import ForeignHistory
from civitas.eventkit.kafka.topics import TopicMismatch

SERVICES = catalog.names()  # in start order: insights last, as it reads the others' events
CONSOLE_TOKEN_HOURS = 8
"""How long the district admin's token ``civitas up`` prints lives: a working day."""


@dataclass
class Child:
    service: str
    process: asyncio.subprocess.Process
    address: str


async def wait_healthy(address: str, within: float = 30.0, name: str = "server") -> None:
    """Wait until the gRPC health service at ``address`` says SERVING; a TimeoutError
    names the service (``name``) after ``within`` seconds."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = asyncio.get_running_loop().time() + within
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{name} at {address} not healthy after {within}s")
            await asyncio.sleep(0.2)


def address_of(service: str, env: dict[str, str], host: str) -> str:
    """Where a service will listen: its port setting in ``env``, or its default port."""
    port = own_setting(env, service, "grpc_port") or str(catalog.spec(service).grpc_port)
    return f"{host}:{port}"


async def start(service: str, env: dict[str, str], host: str) -> Child:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", catalog.spec(service).module, env=env
    )
    return Child(service, process, address_of(service, env, host))


async def up(var_dir: Path, host: str = "127.0.0.1", *, ready_within: float = 30.0) -> int:
    """Start every service, print how to reach them, stop them all on Ctrl-C or SIGTERM;
    1 if a service is not healthy within ``ready_within`` seconds or exits on its own."""
    private_dirs(var_dir)  # 0700 (each service's stores make their folders so too)
    secret = from_environment("auth_secret") or ensure_secret(var_dir)
    env = {**environment(), "CIVITAS_AUTH_SECRET": secret, "CIVITAS_VAR_DIR": str(var_dir)}
    for service in SERVICES:  # every service finds the others where they listen
        env.setdefault(f"CIVITAS_{service.upper()}_ADDRESS", address_of(service, env, host))
    if refused := await kafka_refusal(env, var_dir):
        print(f"civitas: not starting: {refused}", file=sys.stderr)
        return 1
    children: list[Child] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for service in SERVICES:
            children.append(await start(service, env, host))
        print(f"civitas: starting {', '.join(SERVICES)}", flush=True)
        exited = [asyncio.create_task(c.process.wait()) for c in children]
        waiting = asyncio.create_task(stop.wait())
        ready = asyncio.gather(
            *(wait_healthy(c.address, ready_within, c.service) for c in children)
        )
        first: list[asyncio.Future[Any]] = [ready, waiting, *exited]  # ready, stopped, or gone
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done() or ready.exception():
            ready.cancel()
            await asyncio.gather(ready, return_exceptions=True)
            if stop.is_set():  # Ctrl-C while starting (a terminal's reaches the services too)
                return 0
            gone = [
                f"{c.service} (exit code {c.process.returncode})"
                for c in children
                if c.process.returncode is not None
            ]
            why = (
                f"exited before it was ready: {', '.join(gone)}" if gone else str(ready.exception())
            )
            print(f"civitas: {why}; stopping the others", file=sys.stderr)
            return 1
        lifetime = CONSOLE_TOKEN_HOURS * 3600
        token = TokenAuthority(secret).mint(
            "admin", [Role.DISTRICT_ADMIN], ["QH"], ttl_seconds=lifetime
        )
        until = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + lifetime))
        for child in children:
            metrics = own_setting(env, child.service, "metrics_port") or str(
                catalog.spec(child.service).metrics_port
            )
            print(
                f"  {child.service:<12} grpc {child.address}  metrics http://{host}:{metrics}/metrics"
            )
        console = own_setting(env, "insights", "http_port") or str(INSIGHTS_HTTP_PORT)
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
        done, _ = await asyncio.wait([waiting, *exited], return_when=asyncio.FIRST_COMPLETED)
        if waiting not in done:
            print("civitas: a service exited on its own; stopping the others", file=sys.stderr)
            return 1
        return 0
    finally:
        await stop_all(children)


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
    """SIGTERM each child, wait for a graceful exit, SIGKILL what remains."""
    for child in children:
        if child.process.returncode is None:
            child.process.send_signal(signal.SIGTERM)
    for child in children:
        try:
            await asyncio.wait_for(child.process.wait(), grace)
        except TimeoutError:
            child.process.kill()
            await child.process.wait()
    print("civitas: all services stopped", flush=True)
