"""The composition root of party_orgs: everything built from settings, nothing at import."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from civitas.chassis.outbox import relaying
from civitas.chassis.server import GrpcServer
from civitas.chassis.service import infrastructure, own_projection, projecting, serving
from civitas.chassis.settings import ServiceSettings
from civitas.eventkit import Clock, EventStore, ProjectionRunner, SystemClock
from civitas.kept import kept_services

from .application import PartyOrgs
from .directory import Directory, DirectoryQueries
from .grpc_api import PartyOrgsServicer
from .spec import SPEC
from .v1 import party_orgs_pb2, party_orgs_pb2_grpc
from .views import PartyOrgViews

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
    async with contextlib.AsyncExitStack() as stack:
        infra = await stack.enter_async_context(infrastructure(settings))
        app = PartyOrgs(infra.store, infra.vault, clock or SystemClock())
        directory = await stack.enter_async_context(
            projecting(own_projection(Directory(), SPEC.name, infra))
        )
        views = PartyOrgViews(
            app, DirectoryQueries(infra.read_models), directory.wait_until_caught_up
        )
        servicer = PartyOrgsServicer(app, views)
        server = await stack.enter_async_context(
            serving(
                settings,
                infra,
                (party_orgs_pb2_grpc.add_PartyOrgsServiceServicer_to_server, servicer),
                SERVICE_NAME,
                beside=kept_services(SPEC, infra),
                port=port,
            )
        )
        await stack.enter_async_context(relaying(infra.store, settings))
        log.info("party_orgs listening", port=server.port, store=settings.eventstore_url)
        yield RunningPartyOrgs(app, infra.store, server, directory)
