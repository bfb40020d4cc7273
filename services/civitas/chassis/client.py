"""Channels to other services: balanced over every replica a target names, a deadline on
every call, and retries on UNAVAILABLE of only what is safe to send twice.

A target names one address (``127.0.0.1:50052``), every address a name resolves to
(``dns:///cases.civitas.svc.cluster.local:50052``, a Kubernetes headless service: one
A record per ready pod) or a list (``ipv4:127.0.0.1:50052,127.0.0.1:50152``, replicas
on one machine); calls go round robin over the replicas that are connected.

What is retried, and why it is safe: a query (:func:`civitas.chassis.auth.is_query`)
changes nothing; a command whose request names itself, by its ``request_id`` (which
the channel sets when the caller did not) or by the ``idempotency_key`` that
``Transfer`` and ``AssignTask`` take, is answered from the request log on any replica
when it ran already (:mod:`civitas.chassis.requests`). Any other command (such as
``ForgetPerson``, or a method of a service the catalog does not declare) is never
resent: its caller gets the UNAVAILABLE and decides."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from civitas import catalog
from civitas.eventkit.ids import new_uuid
from civitas.eventkit.tracing import current_causation_id, current_correlation_id

from .auth import is_query
from .requests import REQUEST_ID
from .tracing import client_span, end_status

IDEMPOTENCY_KEY = "idempotency_key"
HEALTH_CHECK = {"service": "grpc.health.v1.Health", "method": "Check"}


def safe_to_retry(method: MethodDescriptor) -> bool:
    """Whether a call of ``method`` may be sent again after UNAVAILABLE: a query, or a
    command whose request carries its own request id or idempotency key."""
    fields = method.input_type.fields_by_name
    return is_query(method.name) or REQUEST_ID in fields or IDEMPOTENCY_KEY in fields


def service_config(services: Iterable[ServiceDescriptor], attempts: int = 4) -> str:
    """gRPC service config: ``round_robin`` over the target's addresses, and retries with
    backoff on UNAVAILABLE for the methods of ``services`` that are safe to retry (and
    the health check), each method named: grpc matches names exactly, no prefixes.
    Retries are throttled per channel (grpc's token bucket), so a dead service is not
    hammered by every caller at four times its load.

    The deadline is not set here but on each call (see :class:`_CallDefaults`): a
    deadline from the service config fires early in grpcio's Python channels, by a
    second or two, the time since some clock of the process began (grpc/grpc#34547,
    #40633)."""
    retried = [
        {"service": service.full_name, "method": method.name}
        for service in services
        for method in service.methods
        if safe_to_retry(method)
    ]
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [*retried, HEALTH_CHECK],
                    "retryPolicy": {
                        "maxAttempts": attempts,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
            "retryThrottling": {"maxTokens": 100, "tokenRatio": 0.1},
        }
    )


@functools.cache
def platform_service_config() -> str:
    """The service config of a channel to any service the catalog declares."""
    return service_config(spec.grpc_service() for spec in catalog.SERVICES)


class _CallDefaults(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Adds the bearer token (unless the channel forwards each caller's own, see
    :func:`open_channel`), the current correlation and causation ids and trace context
    to every outgoing call, the channel's deadline to a call made without one (it
    covers the retries), and a request id to a command that takes one and has none:
    grpcio's retries resend the same bytes, so a retry after a lost reply is answered
    with the first result. Each call is a client span, ended when its reply (or its
    error) is in."""

    def __init__(self, token: Callable[[], str] | None, timeout_seconds: float) -> None:
        self.token = token
        self.timeout_seconds = timeout_seconds

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        metadata = list(client_call_details.metadata or ())
        if self.token is not None:
            metadata.append(("authorization", f"Bearer {self.token()}"))
        for key, value in (
            ("x-correlation-id", current_correlation_id()),
            ("x-causation-id", current_causation_id()),
        ):
            if value and not any(k == key for k, _ in metadata):
                metadata.append((key, value))
        timeout = client_call_details.timeout
        method = client_call_details.method
        with client_span(
            method.decode() if isinstance(method, bytes) else method, metadata
        ) as span:
            details = client_call_details._replace(
                metadata=metadata, timeout=self.timeout_seconds if timeout is None else timeout
            )
            call = await continuation(details, with_request_id(request))
            with contextlib.suppress(grpc.aio.AioRpcError):  # the caller gets it too
                await call
            end_status(span, await call.code(), server=False)
        return call


def with_request_id(request: Any) -> Any:
    """``request`` with a fresh request id when it takes one and has none (a copy: the
    caller's message is left as it is)."""
    if not isinstance(request, Message) or REQUEST_ID not in request.DESCRIPTOR.fields_by_name:
        return request
    if getattr(request, REQUEST_ID):
        return request
    named = type(request)()
    named.CopyFrom(request)
    setattr(named, REQUEST_ID, str(new_uuid()))
    return named


def open_channel(
    target: str, token: Callable[[], str] | None, *, timeout_seconds: float = 5.0
) -> grpc.aio.Channel:
    """A channel to ``target`` (one address or several replicas, see the module's
    docstring) whose calls carry a token and the correlation id, with a deadline of
    ``timeout_seconds`` unless the call sets its own. With no ``token`` the channel has
    none of its own: each call carries its caller's, forwarded in its ``authorization``
    metadata, so the other service decides by the caller's role and scope (and a call
    without one is refused there)."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", platform_service_config()),
            ("grpc.enable_retries", 1),
        ],
        interceptors=[_CallDefaults(token, timeout_seconds)],  # type: ignore[list-item]
    )
