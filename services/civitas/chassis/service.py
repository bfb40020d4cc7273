"""What every service's composition root and process entry share."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
import structlog

from civitas.contracts import schemas_of
from civitas.errors import DomainError, Unavailable
from civitas.eventkit import (
    EventStore,
    Feed,
    Projection,
    ProjectionRunner,
    StoreFeed,
    create_read_model_engine,
    open_event_store,
)
from civitas.eventkit.kafka import KafkaFeed, events_topic
from civitas.eventkit.lease import Lease, lease_in
from civitas.eventkit.metrics import CONSUMER_FAILURES
from civitas.eventkit.personal import PersonalDataVault
from civitas.eventkit.process import ProcessManager, ProcessManagerRunner
from civitas.eventkit.projection import RETRYING, Retrying

from .anchoring import anchoring
from .auth import TokenAuthority
from .logs import configure_logging
from .readiness import (
    FAILING_AFTER,
    LEASE_ACQUIRED,
    LEASE_HELD,
    LEASE_LOST,
    STEADY_SECONDS,
    Readiness,
    composing,
    current_readiness,
)
from .requests import RequestLog
from .server import (
    AddServicer,
    GrpcServer,
    serve_until_stopped,
    start_grpc_server,
    start_metrics_server,
)
from .settings import ServiceSettings, TraceSettings
from .tracing import configure_tracing

log = structlog.get_logger("civitas.service")


@dataclass
class Infrastructure:
    """A service's own store, read-model database, personal-data vault and token authority,
    and how its consumers retry a failing handler before they park the event."""

    store: EventStore
    read_models: sa.Engine
    vault: PersonalDataVault
    authority: TokenAuthority
    retrying: Retrying = RETRYING
    readiness: Readiness = field(default_factory=Readiness)


@contextlib.asynccontextmanager
async def infrastructure(settings: ServiceSettings) -> AsyncIterator[Infrastructure]:
    """Open what the settings name; close it all on the way out. The works started
    inside report their health to this replica's readiness (see
    :mod:`civitas.chassis.readiness`)."""
    store = await open_event_store(settings.eventstore_url)
    read_models = create_read_model_engine(settings.read_model_url)
    vault_engine = create_read_model_engine(settings.vault_url)
    try:
        vault = PersonalDataVault(vault_engine)
        await vault.setup()
        authority = TokenAuthority(settings.auth_secret)
        with composing(Readiness()) as readiness:
            retrying = settings.retrying()
            yield Infrastructure(store, read_models, vault, authority, retrying, readiness)
    finally:
        await store.close()
        read_models.dispose()
        vault_engine.dispose()


@dataclass(frozen=True, slots=True)
class Served:
    """A gRPC service served beside a service's own API: its full name, how to add it."""

    name: str
    api: tuple[AddServicer, Any]


@contextlib.asynccontextmanager
async def serving(
    settings: ServiceSettings,
    infra: Infrastructure,
    api: tuple[AddServicer, Any],
    name: str,
    *,
    beside: Sequence[Served] = (),
    port: int | None = None,
) -> AsyncIterator[GrpcServer]:
    """Serve a service's API (``name`` is its full gRPC name) and the services ``beside``
    it (the audit and privacy services its composition root adds, see
    :func:`civitas.kept.kept_services`). ``port`` overrides the settings' (0 binds a free
    one). Stopped on exit."""
    services = [api, *(served.api for served in beside)]
    names = [name, *(served.name for served in beside)]
    requests = RequestLog(infra.read_models, settings.service, settings.auth_secret)
    await requests.setup()
    server = await start_grpc_server(
        services,
        names,
        authority=infra.authority,
        host=settings.host,
        port=settings.grpc_port if port is None else port,
        requests=requests,
    )
    try:
        async with (
            anchoring(infra.store, settings),
            in_background("readiness", lambda: reporting(infra.readiness, server)),
        ):
            yield server
    finally:
        await server.stop()


async def reporting(readiness: Readiness, server: GrpcServer, every: float = 0.5) -> None:
    """Keep the server's health status the replica's readiness, until cancelled."""
    said = True  # a server starts SERVING
    while True:
        if readiness.serving != said:
            said = readiness.serving
            log.warning("readiness", serving=said, failing=readiness.why_not)
            await server.say_serving(said)
        await asyncio.sleep(every)


async def keep_running(
    name: str,
    work: Callable[[], Awaitable[None]],
    pause: float = 1.0,
    readiness: Readiness | None = None,
) -> None:
    """Run ``work`` until cancelled; when it fails, log why and start it again after a
    pause, so a background loop never dies silently. With a ``readiness``, a work that
    keeps failing makes the replica not ready until a run of it holds (see
    :mod:`civitas.chassis.readiness`)."""
    failures = 0
    loop = asyncio.get_running_loop()
    while True:
        started = time.monotonic()
        steady = loop.call_later(STEADY_SECONDS, readiness.healthy, name) if readiness else None
        try:
            await work()
            return
        except Exception as error:
            failures = 1 if time.monotonic() - started >= STEADY_SECONDS else failures + 1
            CONSUMER_FAILURES.labels(name, "restart").inc()
            log.exception("background task failed; restarting", task=name)
            if readiness is not None and failures >= FAILING_AFTER:
                readiness.failing(name, f"{type(error).__name__}: {error}")
            await asyncio.sleep(pause)
        finally:
            if steady is not None:
                steady.cancel()


@contextlib.asynccontextmanager
async def in_background(name: str, work: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """Keep ``work`` running (restarted on failure) while inside."""
    async with _task(name, keep_running(name, work)):
        yield


@contextlib.asynccontextmanager
async def _task(name: str, work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``work`` as a task while inside; cancelled on the way out."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def leading(lease: Lease, work: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """Run ``work`` (restarted on failure) while inside, only while this replica holds
    ``lease``: taken when free, and when lost, the work is cancelled at once and the
    lease waited for again. Acquisitions and losses are logged and counted."""
    async with _task(lease.work, _lead(lease, work, current_readiness())):
        yield


async def _lead(lease: Lease, work: Callable[[], Awaitable[None]], readiness: Readiness) -> None:
    name = lease.work
    try:
        while True:
            try:
                await lease.acquire()
            except Exception:  # a lease file that cannot be made: the work must not die silently
                log.exception("lease not taken; trying again", work=name)
                await asyncio.sleep(1.0)
                continue
            LEASE_HELD.labels(name).set(1)
            LEASE_ACQUIRED.labels(name).inc()
            log.info("lease acquired: running", work=name)
            if await _until_lost(lease, work, readiness):
                return
            await lease.release()  # once the work has stopped, never before
            LEASE_HELD.labels(name).set(0)
            LEASE_LOST.labels(name).inc()
            readiness.healthy(name)  # stopped here: its health is its next holder's
            log.warning("lease lost: work stopped", work=name)
    finally:
        LEASE_HELD.labels(name).set(0)
        readiness.healthy(name)
        await lease.release()


async def _until_lost(
    lease: Lease, work: Callable[[], Awaitable[None]], readiness: Readiness
) -> bool:
    """Run ``work`` until it returns (True) or the lease is lost (False, work cancelled)."""
    running = asyncio.create_task(keep_running(lease.work, work, readiness=readiness))
    losing = asyncio.create_task(lease.lost())
    try:
        await asyncio.wait((running, losing), return_when=asyncio.FIRST_COMPLETED)
        return running.done()
    finally:
        running.cancel()
        losing.cancel()
        await asyncio.gather(running, losing, return_exceptions=True)


@contextlib.asynccontextmanager
async def once(name: str, runner: ProjectionRunner | ProcessManagerRunner) -> AsyncIterator[None]:
    """Run a consumer while inside: on a store feed, on one replica at a time (under a
    lease in its read-model database); on Kafka, in every replica, the consumer group
    assigning each partition to one of them."""
    if isinstance(runner.feed, StoreFeed):
        async with leading(await lease_in(runner.engine, name), runner.run):
            yield
    else:
        async with in_background(name, runner.run):
            yield


@contextlib.asynccontextmanager
async def projecting(runner: ProjectionRunner) -> AsyncIterator[ProjectionRunner]:
    """Keep a projection following its feed while inside (restarted on failure; on a
    store feed, on one replica at a time). Every replica can still wait for it
    (``runner.wait_until_caught_up`` reads its position from the database)."""
    await runner.setup()
    async with once(f"projection-{runner.projection.name}", runner):
        yield runner


def own_projection(projection: Projection, service: str, infra: Infrastructure) -> ProjectionRunner:
    """A projection of the service's own events, read from its store, each event
    checked against the schema of its type and version before it is applied."""
    check, retrying = schemas_of(service).check, infra.retrying
    feed = StoreFeed(infra.store)
    return ProjectionRunner(projection, feed, infra.read_models, check=check, retrying=retrying)


@contextlib.asynccontextmanager
async def events_of(
    service: str, settings: ServiceSettings, own_store: EventStore | None, group: str
) -> AsyncIterator[Feed]:
    """A service's events for a consumer group: its Kafka topic when Kafka is configured,
    else its event store (the embedded default; another service's store is opened here).

    A peer's store is read type-filtered, not with ``complete_streams``: the store
    itself keeps each stream's versions contiguous and unique (its append checks the
    expected version; a unique index holds), and a row forged into a peer's store
    needs write access to that service's own database, which could rewrite its
    history in place as well. Reading whole categories instead made a rebuild of a
    projection that wants a quarter of a store's events 9 to 29% slower (100,000
    events, SQLite, two runs). On Kafka, where anyone who can write to a topic could
    forge an envelope, every stream is read whole (``KafkaFeed.complete_streams``),
    and ``civitas replay`` reads whole streams too."""
    if settings.kafka_bootstrap:
        namespace = settings.kafka_namespace
        topic = events_topic(service, namespace)
        security = settings.kafka_security
        yield KafkaFeed(
            settings.kafka_bootstrap, [topic], group, namespace=namespace, security=security
        )
    elif service == settings.service and own_store is not None:
        yield StoreFeed(own_store)
    else:
        store = await open_event_store(settings.of_peer(service).eventstore_url)
        try:
            yield StoreFeed(store)
        finally:
            await store.close()


@contextlib.asynccontextmanager
async def reacting(
    manager: ProcessManager, service: str, settings: ServiceSettings, infra: Infrastructure
) -> AsyncIterator[ProcessManagerRunner]:
    """Keep a process manager following ``service``'s events while inside (on a store
    feed, on one replica at a time). A peer that cannot be reached is waited for; a
    domain refusal passes the event over, logged."""
    async with events_of(service, settings, infra.store, manager.name) as feed:
        runner = ProcessManagerRunner(
            manager,
            feed,
            infra.read_models,
            retryable=(Unavailable,),
            give_up_on=(DomainError,),
            check=schemas_of(service).check,
            retrying=settings.retrying(),
        )
        await runner.setup()
        async with once(manager.name, runner):
            yield runner


class Running(Protocol):
    server: GrpcServer


def serve(
    service: str, run: Callable[[ServiceSettings], AbstractAsyncContextManager[Running]]
) -> None:
    """A service's process: private files, logs, traces, settings, /metrics, then serve
    until SIGTERM or SIGINT. A failure is logged like any other line (secrets masked),
    exit 1. Spans still batched are sent on the way out."""
    os.umask(0o077)  # whatever the service creates is for its owner alone
    configure_logging(service)  # first, so that no line escapes the masking

    async def main() -> None:
        settings = ServiceSettings.from_env(service)
        tracing = configure_tracing(service, TraceSettings.from_env(service))
        start_metrics_server(settings.host, settings.metrics_port)
        try:
            async with run(settings) as running:
                ready = f"{service} ready on {settings.host}:{running.server.port}"
                await serve_until_stopped(running.server, lambda: print(ready, flush=True))
        finally:
            if tracing is not None:
                tracing.shutdown()

    try:
        asyncio.run(main())
    except Exception:
        log.exception("service stopped on an error")
        sys.exit(1)
