"""The composition root of party_orgs: everything built from settings, nothing at import."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from civitas.chassis.auth import TokenAuthority
from civitas.chassis.outbox import relaying
from civitas.chassis.server import GrpcServer, start_grpc_server
from civitas.chassis.settings import ServiceSettings
from civitas.eventkit import (
    Clock,
    EventStore,
    ProjectionRunner,
    StoreFeed,
    SystemClock,
    create_read_model_engine,
    open_event_store,
)
from civitas.eventkit.personal import PersonalDataVault

from .application import PartyOrgs
from .directory import Directory, DirectoryQueries
from .grpc_api import PartyOrgsServicer
from .v1 import party_orgs_pb2, party_orgs_pb2_grpc

SERVICE_NAME = party_orgs_pb2.DESCRIPTOR.services_by_name["PartyOrgsService"].full_name
log = structlog.get_logger("civitas.party_orgs")


@dataclass
class RunningPartyOrgs:
    """A running party_orgs: its application, store and gRPC server."""

    app: PartyOrgs
    store: EventStore
    server: GrpcServer
    directory: ProjectionRunner


@contextlib.asynccontextmanager
async def run_party_orgs(
    settings: ServiceSettings, *, clock: Clock | None = None, port: int | None = None
) -> AsyncIterator[RunningPartyOrgs]:
    """Build party_orgs, start its directory projection and its gRPC server; stop on exit."""
    store = await open_event_store(settings.eventstore_url)
    read_models = create_read_model_engine(settings.read_model_url)
    vault_engine = create_read_model_engine(settings.vault_url)
    vault = PersonalDataVault(vault_engine)
    await vault.setup()
    app = PartyOrgs(store, vault, clock or SystemClock())
    directory = ProjectionRunner(Directory(), StoreFeed(store), read_models)
    await directory.setup()
    projecting = asyncio.create_task(directory.run(), name="directory")
    servicer = PartyOrgsServicer(app, DirectoryQueries(read_models), directory.wait_until_caught_up)
    server = await start_grpc_server(
        [(party_orgs_pb2_grpc.add_PartyOrgsServiceServicer_to_server, servicer)],
        [SERVICE_NAME],
        authority=TokenAuthority(settings.auth_secret),
        host=settings.host,
        port=settings.grpc_port if port is None else port,
    )
    log.info("party_orgs listening", port=server.port, store=settings.eventstore_url)
    try:
        async with relaying(store, settings):
            yield RunningPartyOrgs(app, store, server, directory)
    finally:
        await server.stop()
        projecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await projecting
        await store.close()
        read_models.dispose()
        vault_engine.dispose()
