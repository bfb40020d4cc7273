"""The composition root of volunteers: everything built from settings, nothing at import."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from civitas.chassis.outbox import relaying
from civitas.chassis.server import GrpcServer, start_grpc_server
from civitas.chassis.service import in_background, infrastructure
from civitas.chassis.settings import ServiceSettings
from civitas.errors import DomainError, Unavailable
from civitas.eventkit import Clock, EventStore, Feed, StoreFeed, SystemClock, open_event_store
from civitas.eventkit.kafka import KafkaFeed, events_topic
from civitas.eventkit.process import ProcessManager, ProcessManagerRunner

from .application import Volunteers
from .grpc_api import VolunteersServicer
from .members import PartyMembers, PartyOrgsMembers
from .processes import HoursToMemberCards, MemberVolunteerProfiles
from .v1 import volunteers_pb2, volunteers_pb2_grpc

SERVICE_NAME = volunteers_pb2.DESCRIPTOR.services_by_name["VolunteersService"].full_name
log = structlog.get_logger("civitas.volunteers")


@dataclass
class RunningVolunteers:
    app: Volunteers
    store: EventStore
    server: GrpcServer
    processes: list[ProcessManagerRunner]


def feed_of(service: str, settings: ServiceSettings, store: EventStore, group: str) -> Feed:
    """Kafka when it is configured, else the service's event store (the embedded default)."""
    if settings.kafka_bootstrap:
        namespace = settings.kafka_namespace
        return KafkaFeed(
            settings.kafka_bootstrap, [events_topic(service, namespace)], f"{namespace}.{group}"
        )
    return StoreFeed(store)


@contextlib.asynccontextmanager
async def run_volunteers(
    settings: ServiceSettings,
    *,
    clock: Clock | None = None,
    port: int | None = None,
    members: PartyMembers | None = None,
    party_orgs_store_url: str | None = None,
) -> AsyncIterator[RunningVolunteers]:
    """Build volunteers, its process managers and gRPC server; stop them all on exit."""
    async with contextlib.AsyncExitStack() as stack:
        infra = await stack.enter_async_context(infrastructure(settings))
        if members is None:
            client = PartyOrgsMembers(settings.peer_address("party_orgs"), infra.authority)
            stack.push_async_callback(client.close)
            members = client
        app = Volunteers(infra.store, infra.vault, clock or SystemClock(), members)
        party_orgs_store = infra.store
        if not settings.kafka_bootstrap:  # the embedded default reads party_orgs' store
            url = (
                party_orgs_store_url
                or ServiceSettings.from_env(
                    "party_orgs",
                    {
                        **os.environ,
                        "CIVITAS_AUTH_SECRET": settings.auth_secret,
                        "CIVITAS_VAR_DIR": str(settings.var_dir),
                    },
                ).eventstore_url
            )
            party_orgs_store = await open_event_store(url)
            stack.push_async_callback(party_orgs_store.close)

        def runner_for(manager: ProcessManager, feed: Feed) -> ProcessManagerRunner:
            return ProcessManagerRunner(
                manager,
                feed,
                infra.read_models,
                retryable=(Unavailable,),
                give_up_on=(DomainError,),
            )

        runners = [
            runner_for(
                MemberVolunteerProfiles(app),
                feed_of("party_orgs", settings, party_orgs_store, MemberVolunteerProfiles.name),
            ),
            runner_for(
                HoursToMemberCards(members, app),
                feed_of("volunteers", settings, infra.store, HoursToMemberCards.name),
            ),
        ]
        for runner in runners:
            await runner.setup()
            await stack.enter_async_context(in_background(runner.manager.name, runner.run))
        server = await start_grpc_server(
            [
                (
                    volunteers_pb2_grpc.add_VolunteersServiceServicer_to_server,
                    VolunteersServicer(app),
                )
            ],
            [SERVICE_NAME],
            authority=infra.authority,
            host=settings.host,
            port=settings.grpc_port if port is None else port,
        )
        stack.push_async_callback(server.stop)
        await stack.enter_async_context(relaying(infra.store, settings))
        log.info("volunteers listening", port=server.port, store=settings.eventstore_url)
        yield RunningVolunteers(app, infra.store, server, runners)
