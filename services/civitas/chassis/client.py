"""Channels to other services: a deadline on every call, retries only on UNAVAILABLE."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from civitas.eventkit.ids import new_uuid
from civitas.eventkit.tracing import current_causation_id, current_correlation_id

from .requests import REQUEST_ID
from .tracing import client_span, end_status


def service_config(attempts: int = 4) -> str:
    """gRPC service config: retries with backoff on UNAVAILABLE.

    The deadline is not set here but on each call (see :class:`_CallDefaults`): a
    deadline from the service config fires early in grpcio's Python channels, by a
    second or two, the time since some clock of the process began (grpc/grpc#34547,
    #40633)."""
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{}],
                    "retryPolicy": {
                        "maxAttempts": attempts,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


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
    address: str, token: Callable[[], str] | None, *, timeout_seconds: float = 5.0
) -> grpc.aio.Channel:
    """A channel to ``address`` whose calls carry a token and the correlation id, with a
    deadline of ``timeout_seconds`` unless the call sets its own. With no ``token`` the
    channel has none of its own: each call carries its caller's, forwarded in its
    ``authorization`` metadata, so the other service decides by the caller's role and
    scope (and a call without one is refused there)."""
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.service_config", service_config()),
            ("grpc.enable_retries", 1),
        ],
        interceptors=[_CallDefaults(token, timeout_seconds)],  # type: ignore[list-item]
    )
