"""The gRPC server every service runs: health, reflection, graceful shutdown, /metrics."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # stubs lag
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from .auth import TokenAuthority
from .interceptor import RequestInterceptor
from .requests import RequestLog

log = structlog.get_logger("civitas.server")

AddServicer = Callable[[Any, grpc.aio.Server], None]
MAX_REQUEST_BYTES = 1 << 20  # as large as an event may be; gRPC's default is 4 MiB
MAX_CONNECTION_AGE_SECONDS = 300.0
"""A client's connection is ended (GOAWAY) after about this long (grpc adds +-10%
jitter), so that clients connect again and re-resolve their target: a ``dns:///``
name is resolved anew only when a connection drops, and replicas added meanwhile would
otherwise get no calls from clients connected before them."""
CONNECTION_AGE_GRACE_SECONDS = 30.0
"""How long calls in flight on an aged connection may still finish (past any command's
run; a call's deadline is seconds)."""


@dataclass
class GrpcServer:
    """A started server, the port it bound, and its health service."""

    server: grpc.aio.Server
    port: int
    health: health_aio.HealthServicer
    service_names: tuple[str, ...]

    async def say_serving(self, serving: bool) -> None:
        """Set the health status of the server and each of its services: SERVING or
        NOT_SERVING (the replica's readiness: see :mod:`civitas.chassis.readiness`)."""
        status = health_pb2.HealthCheckResponse
        for name in ("", *self.service_names):
            await self.health.set(name, status.SERVING if serving else status.NOT_SERVING)

    async def stop(self, grace: float = 5.0) -> None:
        """Say NOT_SERVING, let calls in flight finish (up to ``grace`` seconds), stop."""
        await self.say_serving(False)
        await self.server.stop(grace)


async def start_grpc_server(
    servicers: Sequence[tuple[AddServicer, Any]],
    service_names: Sequence[str],
    *,
    authority: TokenAuthority,
    host: str = "127.0.0.1",
    port: int = 0,
    requests: RequestLog | None = None,
    max_connection_age: float = MAX_CONNECTION_AGE_SECONDS,
    connection_age_grace: float = CONNECTION_AGE_GRACE_SECONDS,
) -> GrpcServer:
    """Build and start a grpc.aio server; ``port=0`` binds a free port. With a request
    log, commands that carry a request id run once per id. Connections are ended after
    ``max_connection_age`` seconds, their calls given ``connection_age_grace`` more."""
    server = grpc.aio.server(
        interceptors=[RequestInterceptor(authority, requests)],
        options=[
            ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
            ("grpc.max_connection_age_ms", int(max_connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", int(connection_age_grace * 1000)),
        ],
    )
    for add, servicer in servicers:
        add(servicer, server)
    health_service = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    for name in ("", *service_names):
        await health_service.set(name, health_pb2.HealthCheckResponse.SERVING)
    return GrpcServer(server, bound, health_service, tuple(service_names))


def start_metrics_server(host: str, port: int) -> int:
    """Serve Prometheus metrics on http://host:port/metrics; returns the port bound."""
    http_server, _ = start_http_server(port, addr=host)
    return int(http_server.server_port)


async def serve_until_stopped(
    server: GrpcServer, announce: Callable[[], None] | None = None
) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully. ``announce`` says the
    server is ready, once the signals are caught: a signal sent as soon as it is read
    stops the server gracefully instead of killing the process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if announce is not None:
        announce()
    await stop.wait()
    log.info("stopping", port=server.port)
    await server.stop()
