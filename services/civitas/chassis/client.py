"""Channels to other services: a deadline on every call, retries only on UNAVAILABLE."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from civitas.eventkit.ids import new_uuid

from .interceptor import CORRELATION_ID
from .requests import REQUEST_ID


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
    :func:`open_channel`) and the current correlation id to every outgoing call, the
    channel's deadline to a call made without one (it covers the retries), and a request
    id to a command that takes one and has none: grpcio's retries resend the same
    bytes, so a retry after a lost reply is answered with the first result."""

    def __init__(self, token: Callable[[], str] | None, timeout_seconds: float) -> None:
        self.token = token
        self.timeout_seconds = timeout_seconds

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        metadata = list(client_call_details.metadata or ())
        if self.token is not None:
            metadata.append(("authorization", f"Bearer {self.token()}"))
        correlation = CORRELATION_ID.get(None)
        if correlation and not any(k == "x-correlation-id" for k, _ in metadata):
            metadata.append(("x-correlation-id", correlation))
        timeout = client_call_details.timeout
        details = client_call_details._replace(
            metadata=metadata, timeout=self.timeout_seconds if timeout is None else timeout
        )
        return await continuation(details, with_request_id(request))


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
