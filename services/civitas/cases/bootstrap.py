"""The composition root of cases: everything built from settings, nothing at import."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from civitas.chassis.outbox import relaying
from civitas.chassis.server import GrpcServer
from civitas.chassis.service import infrastructure, own_projection, projecting, reacting, serving
from civitas.chassis.settings import ServiceSettings
from civitas.eventkit import Clock, EventStore, ProjectionRunner, SystemClock
from civitas.eventkit.process import ProcessManagerRunner
from civitas.kept import kept_services

from .application import Cases
from .case_index import CaseIndex, CaseQueries, PageTokens, supervising
from .domain.case import DeadlinePolicy
from .grids import GridResolver, PartyOrgsGrids
from .grpc_api import CasesServicer
from .processes import FundingOutcomes
from .spec import SPEC
from .v1 import cases_pb2, cases_pb2_grpc
from .views import CaseViews

SERVICE_NAME = cases_pb2.DESCRIPTOR.services_by_name["CasesService"].full_name
log = structlog.get_logger("civitas.cases")


@dataclass
class RunningCases:
    app: Cases
    store: EventStore
    server: GrpcServer
    index: ProjectionRunner
    funding_outcomes: ProcessManagerRunner


@contextlib.asynccontextmanager
async def run_cases(
    settings: ServiceSettings,
    *,
    clock: Clock | None = None,
    port: int | None = None,
    grids: GridResolver | None = None,
    supervise_every: float | None = None,
) -> AsyncIterator[RunningCases]:
    """Build cases, start its index, supervisor, funding outcomes and gRPC server; stop
    them on exit."""
    clock = clock or SystemClock()
    async with contextlib.AsyncExitStack() as stack:
        infra = await stack.enter_async_context(infrastructure(settings))
        if grids is None:
            resolver = PartyOrgsGrids(settings.peer_address("party_orgs"), infra.authority)
            stack.push_async_callback(resolver.close)
            grids = resolver
        policy = DeadlinePolicy.parse(settings.own("deadlines", ""))
        app = Cases(infra.store, infra.vault, clock, grids, policy)
        index = await stack.enter_async_context(
            projecting(own_projection(CaseIndex(), SPEC.name, infra))
        )
        queries = CaseQueries(infra.read_models, PageTokens(page_token_key(settings)))
        outcomes = await stack.enter_async_context(
            reacting(FundingOutcomes(app), SPEC.source_of(FundingOutcomes.name), settings, infra)
        )
        server = await stack.enter_async_context(
            serving(
                settings,
                infra,
                (
                    cases_pb2_grpc.add_CasesServiceServicer_to_server,
                    CasesServicer(app, CaseViews(app, queries, index.wait_until_caught_up)),
                ),
                SERVICE_NAME,
                beside=kept_services(SPEC, infra),
                port=port,
            )
        )
        every = supervise_every or float(settings.own("supervise_seconds", "30"))
        await stack.enter_async_context(relaying(infra.store, settings))
        await stack.enter_async_context(supervising(app.supervise, queries, clock, every))
        log.info("cases listening", port=server.port, store=settings.eventstore_url)
        yield RunningCases(app, infra.store, server, index, outcomes)


def page_token_key(settings: ServiceSettings) -> bytes:
    """The key ListCases signs its page tokens with: derived from the shared secret, so
    every replica of cases reads the tokens any other gave out."""
    return hmac.new(
        settings.auth_secret.encode(), b"civitas.cases page tokens", hashlib.sha256
    ).digest()
