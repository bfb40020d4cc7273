"""The composition root of cases: everything built from settings, nothing at import."""

from __future__ import annotations

import asyncio
import contextlib
import os
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

from .application import Cases
from .case_index import CaseIndex, CaseQueries, supervising
from .domain.case import DeadlinePolicy
from .grids import GridResolver, PartyOrgsGrids
from .grpc_api import CasesServicer
from .v1 import cases_pb2, cases_pb2_grpc

SERVICE_NAME = cases_pb2.DESCRIPTOR.services_by_name["CasesService"].full_name
log = structlog.get_logger("civitas.cases")


@dataclass
class RunningCases:
    app: Cases
    store: EventStore
    server: GrpcServer
    index: ProjectionRunner


@contextlib.asynccontextmanager
async def run_cases(
    settings: ServiceSettings,
    *,
    clock: Clock | None = None,
    port: int | None = None,
    grids: GridResolver | None = None,
    supervise_every: float | None = None,
) -> AsyncIterator[RunningCases]:
    """Build cases, start its index, supervisor and gRPC server; stop them on exit."""
    clock = clock or SystemClock()
    authority = TokenAuthority(settings.auth_secret)
    store = await open_event_store(settings.eventstore_url)
    read_models = create_read_model_engine(settings.read_model_url)
    vault_engine = create_read_model_engine(settings.vault_url)
    vault = PersonalDataVault(vault_engine)
    await vault.setup()
    party_orgs = grids or PartyOrgsGrids(settings.peer_address("party_orgs"), authority)
    policy = DeadlinePolicy.parse(os.environ.get("CIVITAS_CASES_DEADLINES", ""))
    app = Cases(store, vault, clock, party_orgs, policy)
    index = ProjectionRunner(CaseIndex(), StoreFeed(store), read_models)
    await index.setup()
    indexing = asyncio.create_task(index.run(), name="case-index")
    queries = CaseQueries(read_models)
    every = supervise_every or float(os.environ.get("CIVITAS_CASES_SUPERVISE_SECONDS", "30"))
    server = await start_grpc_server(
        [
            (
                cases_pb2_grpc.add_CasesServiceServicer_to_server,
                CasesServicer(app, queries, index.wait_until_caught_up),
            )
        ],
        [SERVICE_NAME],
        authority=authority,
        host=settings.host,
        port=settings.grpc_port if port is None else port,
    )
    log.info("cases listening", port=server.port, store=settings.eventstore_url)
    try:
        async with relaying(store, settings), supervising(app.supervise, queries, clock, every):
            yield RunningCases(app, store, server, index)
    finally:
        await server.stop()
        indexing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await indexing
        if isinstance(party_orgs, PartyOrgsGrids):
            await party_orgs.close()
        await store.close()
        read_models.dispose()
        vault_engine.dispose()
