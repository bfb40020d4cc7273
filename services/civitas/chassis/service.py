"""What every service's composition root and process entry share."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
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
from civitas.eventkit.metrics import CONSUMER_FAILURES
from civitas.eventkit.personal import PersonalDataVault
from civitas.eventkit.process import ProcessManager, ProcessManagerRunner
from civitas.eventkit.projection import RETRYING, Retrying

from .anchoring import anchoring
from .auth import TokenAuthority
from .logs import configure_logging
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


@contextlib.asynccontextmanager
async def infrastructure(settings: ServiceSettings) -> AsyncIterator[Infrastructure]:
    """Open what the settings name; close it all on the way out."""
    store = await open_event_store(settings.eventstore_url)
    read_models = create_read_model_engine(settings.read_model_url)
    vault_engine = create_read_model_engine(settings.vault_url)
    try:
        vault = PersonalDataVault(vault_engine)
        await vault.setup()
        authority = TokenAuthority(settings.auth_secret)
        yield Infrastructure(store, read_models, vault, authority, settings.retrying())
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
        async with anchoring(infra.store, settings):
            yield server
    finally:
        await server.stop()


async def keep_running(name: str, work: Callable[[], Awaitable[None]], pause: float = 1.0) -> None:
    """Run ``work`` until cancelled; when it fails, log why and start it again after a
    pause, so a background loop never dies silently while the service says SERVING."""
    while True:
        try:
            await work()
            return
        except Exception:
            CONSUMER_FAILURES.labels(name, "restart").inc()
            log.exception("background task failed; restarting", task=name)
            await asyncio.sleep(pause)


@contextlib.asynccontextmanager
async def in_background(name: str, work: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """Keep ``work`` running (restarted on failure) while inside."""
    task = asyncio.create_task(keep_running(name, work), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def projecting(runner: ProjectionRunner) -> AsyncIterator[ProjectionRunner]:
    """Keep a projection following its feed while inside (restarted on failure)."""
    await runner.setup()
    async with in_background(f"projection-{runner.projection.name}", runner.run):
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
        yield KafkaFeed(settings.kafka_bootstrap, [topic], group, namespace=namespace)
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
    """Keep a process manager following ``service``'s events while inside. A peer that
    cannot be reached is waited for; a domain refusal passes the event over, logged."""
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
        async with in_background(manager.name, runner.run):
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
