"""The composition root of funds: everything built from settings, nothing at import."""

from __future__ import annotations

import contextlib
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

from .application import Funds
from .domain.accounts import YUAN
from .grpc_api import FundsServicer
from .ledger import Ledger, LedgerQueries
from .processes import CaseExpenditureSettlement, CaseFundingRequests
from .spec import SPEC
from .v1 import funds_pb2, funds_pb2_grpc
from .views import FundsViews

SERVICE_NAME = funds_pb2.DESCRIPTOR.services_by_name["FundsService"].full_name
log = structlog.get_logger("civitas.funds")


@dataclass
class RunningFunds:
    app: Funds
    store: EventStore
    server: GrpcServer
    processes: list[ProcessManagerRunner]
    ledger: ProjectionRunner


@contextlib.asynccontextmanager
async def run_funds(
    settings: ServiceSettings, *, clock: Clock | None = None, port: int | None = None
) -> AsyncIterator[RunningFunds]:
    """Build funds, its ledger, its part of the saga with cases and its gRPC server; stop
    them on exit."""
    async with contextlib.AsyncExitStack() as stack:
        infra = await stack.enter_async_context(infrastructure(settings))
        threshold = int(settings.own("street_threshold_yuan", "20000")) * YUAN
        app = Funds(infra.store, clock or SystemClock(), threshold)
        ledger = await stack.enter_async_context(
            projecting(own_projection(Ledger(), SPEC.name, infra))
        )
        queries = LedgerQueries(infra.read_models)
        processes = [
            await stack.enter_async_context(
                reacting(
                    CaseFundingRequests(app),
                    SPEC.source_of(CaseFundingRequests.name),
                    settings,
                    infra,
                )
            ),
            await stack.enter_async_context(
                reacting(
                    CaseExpenditureSettlement(app),
                    SPEC.source_of(CaseExpenditureSettlement.name),
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
                    funds_pb2_grpc.add_FundsServiceServicer_to_server,
                    FundsServicer(app, FundsViews(app, queries, ledger.wait_until_caught_up)),
                ),
                SERVICE_NAME,
                beside=kept_services(SPEC, infra),
                port=port,
            )
        )
        await stack.enter_async_context(relaying(infra.store, settings))
        log.info("funds listening", port=server.port, store=settings.eventstore_url)
        yield RunningFunds(app, infra.store, server, processes, ledger)
