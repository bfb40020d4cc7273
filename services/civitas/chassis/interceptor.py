"""The server interceptor: every unary call's edge, in one place.

Each call is a server span (:mod:`.tracing`), a child of the caller's ``traceparent``.
In order: the correlation id comes from ``x-correlation-id`` (a short token, checked) or
is made up, and is bound to the logs and to the request's context so that events record
it, with the cause a process manager names in ``x-causation-id``; the request's bytes
are decoded here, so a malformed payload is answered INVALID_ARGUMENT; the token in
``authorization: Bearer …`` is verified (health and reflection need none), and a
service's token may call only the commands granted to its service; every value of the
request is checked against its bound (:mod:`.limits`); a command with a request id runs
once per id (:mod:`.requests`). Known domain errors become their status codes; anything
else is a bug: logged with its traceback and answered INTERNAL.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import sqlalchemy as sa
import structlog
from google.protobuf.message import DecodeError
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from civitas import errors
from civitas.eventkit import AggregateNotFound, ConcurrencyError, StoreClosed
from civitas.eventkit.ids import new_uuid
from civitas.eventkit.tracing import CAUSATION_ID, CORRELATION_ID

from .auth import Caller, Principal, TokenAuthority, check_service_call
from .limits import check_request
from .requests import RequestLog
from .tracing import end_status, server_span

log = structlog.get_logger("civitas.grpc")

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")

STARTED = Counter(
    "grpc_server_started_total",
    "RPCs started on the server",
    ["grpc_type", "grpc_service", "grpc_method"],
)
HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "Time to handle an RPC on the server",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

STATUS_OF: list[tuple[type[Exception], grpc.StatusCode]] = [
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (AggregateNotFound, grpc.StatusCode.NOT_FOUND),
    (errors.Conflict, grpc.StatusCode.ABORTED),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (ConcurrencyError, grpc.StatusCode.ABORTED),
    (errors.RuleViolation, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.NotAllowed, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (StoreClosed, grpc.StatusCode.UNAVAILABLE),  # shutting down
    (TimeoutError, grpc.StatusCode.UNAVAILABLE),  # a read model still catching up: retry
    # A database down, restarting or gone in the middle of a call: a client may send the
    # command again (its request id answers a retry of what had committed after all).
    (asyncpg.PostgresConnectionError, grpc.StatusCode.UNAVAILABLE),
    (asyncpg.exceptions.OperatorInterventionError, grpc.StatusCode.UNAVAILABLE),
    (sa.exc.OperationalError, grpc.StatusCode.UNAVAILABLE),
    (ConnectionError, grpc.StatusCode.UNAVAILABLE),
]  # any other store error means the service itself asked for something wrong: a bug

OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")
_CORRELATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def status_of(error: Exception) -> grpc.StatusCode | None:
    """The status code for a known domain error; None for anything else (a bug)."""
    for kind, code in STATUS_OF:
        if isinstance(error, kind):
            return code
    return None


def current_principal() -> Principal:
    """The verified caller of the request being handled."""
    return PRINCIPAL.get()


def current_correlation_id() -> str:
    """The correlation id of the request being handled."""
    return CORRELATION_ID.get()


def current_caller() -> Caller:
    """The caller of the request being handled, with its correlation id."""
    return Caller(current_principal(), current_correlation_id())


class RequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps every unary-unary handler with the edge's checks, error mapping and metrics."""

    def __init__(self, authority: TokenAuthority, requests: RequestLog | None = None) -> None:
        self.authority = authority
        self.requests = requests

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        path = details.method
        service, _, method = path.lstrip("/").partition("/")
        open_call = service.startswith(OPEN_SERVICES)
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        inner: Any = handler.unary_unary
        decode: Any = handler.request_deserializer

        async def traced(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            with server_span(path, metadata):
                return await handle(raw, context)

        async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            labels = ("unary", service, method)
            STARTED.labels(*labels).inc()
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            counted = False

            def count() -> None:
                nonlocal counted
                if not counted:
                    counted = True
                    HANDLED.labels(*labels, code.name).inc()
                    LATENCY.labels(*labels).observe(time.perf_counter() - started)
                    end_status(trace.get_current_span(), code, server=True)

            given = metadata.get("x-correlation-id")
            correlation = given if given and _CORRELATION_ID.fullmatch(given) else new_uuid().hex
            CORRELATION_ID.set(correlation)
            structlog.contextvars.bind_contextvars(correlation_id=correlation, rpc=method)
            cause = metadata.get("x-causation-id")
            try:
                if given is not None and given != correlation:
                    raise errors.InvalidInput(
                        "x-correlation-id is 1-64 letters, digits and _.:- (it was not)"
                    )
                if cause is not None:
                    CAUSATION_ID.set(_causation_id(cause))
                request = _decoded(decode, raw)
                if open_call:
                    return await inner(request, context)
                principal = self._authenticate(metadata)
                PRINCIPAL.set(principal)
                check_service_call(principal, path)
                check_request(request)
                if self.requests is None:
                    return await inner(request, context)
                servicer = getattr(inner, "__self__", None)  # the servicer the method is bound to
                return await self.requests.once(
                    path, principal, request, lambda: inner(request, context), servicer
                )
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN  # the servicer aborted
                raise
            except Exception as exc:
                known = status_of(exc)
                message = str(exc)
                if known is None:  # a bug: keep its traceback, tell the caller little
                    log.exception("unexpected error", method=method)
                    message = f"internal error (correlation id {correlation})"
                code = known or grpc.StatusCode.INTERNAL
                # Counted before the status leaves: abort sends it at once, and a caller
                # that reads the metrics after its call must find the call counted.
                count()
                await context.abort(code, message)
            finally:
                count()
                structlog.contextvars.unbind_contextvars("correlation_id", "rpc")

        return grpc.unary_unary_rpc_method_handler(
            traced,
            request_deserializer=None,  # decoded in ``handle``: bad bytes are bad input
            response_serializer=handler.response_serializer,
        )

    def _authenticate(self, metadata: dict[str, str]) -> Principal:
        header = metadata.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise errors.Unauthenticated("no bearer token in the 'authorization' metadata")
        return self.authority.verify(token)


def _causation_id(given: str) -> str:
    """The id of what caused a call (``x-causation-id``: the event a process manager
    reacts to), which the events the call records keep as their causation."""
    if not _CORRELATION_ID.fullmatch(given):
        raise errors.InvalidInput("x-causation-id is 1-64 letters, digits and _.:- (it was not)")
    return given


def _decoded(decode: Any, raw: bytes) -> Any:
    """The request message from its bytes; bytes that are no such message are bad input."""
    if decode is None:
        return raw
    try:
        return decode(raw)
    except DecodeError as exc:
        raise errors.InvalidInput(f"the request is not a valid protobuf message ({exc})") from None
