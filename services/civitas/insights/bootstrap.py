"""The composition root of insights: projections of every service's events, the
queries over them, gRPC and HTTP; everything built from settings, nothing at import."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from civitas.chassis.auth import TokenAuthority
from civitas.chassis.readiness import Readiness, composing
from civitas.chassis.server import GrpcServer, start_grpc_server
from civitas.chassis.service import events_of, in_background, projecting, reporting
from civitas.chassis.settings import INSIGHTS_HTTP_PORT, ServiceSettings
from civitas.contracts import schemas_of
from civitas.eventkit import (
    Clock,
    Projection,
    ProjectionRunner,
    SystemClock,
    create_read_model_engine,
    setting,
)

from .case_texts import CasesTexts
from .grpc_api import InsightsServicer
from .http import build_app, serving_http
from .queries import InsightsQueries
from .spec import SPEC
from .v1 import insights_pb2, insights_pb2_grpc
from .views import InsightsViews

SERVICE_NAME = insights_pb2.DESCRIPTOR.services_by_name["InsightsService"].full_name
log = structlog.get_logger("civitas.insights")


@dataclass
class RunningInsights:
    queries: InsightsQueries
    server: GrpcServer
    http_port: int
    projections: list[ProjectionRunner]
    readiness: Readiness


def sources() -> list[tuple[str, Projection]]:
    """Which service's events each projection reads (insights' spec says)."""
    return [(projected.source, projected.projection()) for projected in SPEC.projections]


@contextlib.asynccontextmanager
async def run_insights(
    settings: ServiceSettings,
    *,
    clock: Clock | None = None,
    port: int | None = None,
    http_port: int | None = None,
) -> AsyncIterator[RunningInsights]:
    """Start the projections, gRPC and HTTP; stop them all on exit. insights owns no
    events: it reads the other services' stores (embedded) or topics (Kafka). Its gRPC
    health follows the projections it leads, as a service's does (see
    :mod:`civitas.chassis.readiness`)."""
    async with contextlib.AsyncExitStack() as stack:
        readiness = stack.enter_context(composing(Readiness()))
        read_models = create_read_model_engine(settings.read_model_url)
        stack.callback(read_models.dispose)
        authority = TokenAuthority(settings.auth_secret)
        runners = []
        for service, projection in sources():
            feed = await stack.enter_async_context(
                events_of(service, settings, None, projection.name)
            )
            check, retrying = schemas_of(service).check, settings.retrying()
            runner = ProjectionRunner(projection, feed, read_models, check=check, retrying=retrying)
            runners.append(await stack.enter_async_context(projecting(runner)))
        case_texts = CasesTexts(settings.peer_address("cases"))
        stack.push_async_callback(case_texts.close)
        queries = InsightsQueries(read_models, clock or SystemClock())
        views = InsightsViews(queries, case_texts)
        server = await start_grpc_server(
            [
                (
                    insights_pb2_grpc.add_InsightsServiceServicer_to_server,
                    InsightsServicer(views),
                )
            ],
            [SERVICE_NAME],
            authority=authority,
            host=settings.host,
            port=settings.grpc_port if port is None else port,
        )
        stack.push_async_callback(server.stop)
        await stack.enter_async_context(
            in_background("readiness", lambda: reporting(readiness, server))
        )
        if http_port is None:
            http_port = int(
                setting("http_port", "insights", str(INSIGHTS_HTTP_PORT), environ=settings.environ)
                or INSIGHTS_HTTP_PORT
            )
        bound = await stack.enter_async_context(
            serving_http(build_app(views, authority), settings.host, http_port)
        )
        log.info("insights listening", port=server.port, http_port=bound)
        yield RunningInsights(queries, server, bound, runners, readiness)
