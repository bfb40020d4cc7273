"""The composition root of volunteers: everything built from settings, nothing at import."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from civitas.chassis.outbox import relaying
from civitas.chassis.server import GrpcServer
from civitas.chassis.service import infrastructure, reacting, serving
from civitas.chassis.settings import ServiceSettings
from civitas.eventkit import Clock, EventStore, SystemClock
from civitas.eventkit.process import ProcessManagerRunner
from civitas.kept import kept_services

from .application import Volunteers
from .grpc_api import VolunteersServicer
from .members import PartyMembers, PartyOrgsMembers
from .processes import HoursToMemberCards, MemberVolunteerProfiles
from .spec import SPEC
from .v1 import volunteers_pb2, volunteers_pb2_grpc
from .views import VolunteerViews

SERVICE_NAME = volunteers_pb2.DESCRIPTOR.services_by_name["VolunteersService"].full_name
log = structlog.get_logger("civitas.volunteers")


@dataclass
class RunningVolunteers:
    app: Volunteers
    store: EventStore
    server: GrpcServer
    processes: list[ProcessManagerRunner]


@contextlib.asynccontextmanager
async def run_volunteers(
    settings: ServiceSettings,
    *,
    clock: Clock | None = None,
    port: int | None = None,
    members: PartyMembers | None = None,
) -> AsyncIterator[RunningVolunteers]:
    """Build volunteers, its process managers and gRPC server; stop them all on exit."""
    async with contextlib.AsyncExitStack() as stack:
        infra = await stack.enter_async_context(infrastructure(settings))
        if members is None:
            client = PartyOrgsMembers(settings.peer_address("party_orgs"), infra.authority)
            stack.push_async_callback(client.close)
            members = client
        app = Volunteers(infra.store, infra.vault, clock or SystemClock(), members)
        runners = [
            await stack.enter_async_context(
                reacting(
                    MemberVolunteerProfiles(app),
                    SPEC.source_of(MemberVolunteerProfiles.name),
                    settings,
                    infra,
                )
            ),
            await stack.enter_async_context(
                reacting(
                    HoursToMemberCards(members, app),
                    SPEC.source_of(HoursToMemberCards.name),
                    settings,
                    infra,
                )
            ),
        ]
        server = await stack.enter_async_context(
            serving(
                settings,
                infra,
                (
                    volunteers_pb2_grpc.add_VolunteersServiceServicer_to_server,
                    VolunteersServicer(app, VolunteerViews(app)),
                ),
                SERVICE_NAME,
                beside=kept_services(SPEC, infra),
                port=port,
            )
        )
        await stack.enter_async_context(relaying(infra.store, settings))
        log.info("volunteers listening", port=server.port, store=settings.eventstore_url)
        yield RunningVolunteers(app, infra.store, server, runners)
