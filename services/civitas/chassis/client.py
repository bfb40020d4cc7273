"""Channels to other services: a deadline on every call, retries only on UNAVAILABLE."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc

from .interceptor import CORRELATION_ID


def service_config(timeout_seconds: float, attempts: int = 4) -> str:
    """gRPC service config: a default deadline, and retries with backoff on UNAVAILABLE."""
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{}],
                    "timeout": f"{timeout_seconds}s",
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


class _Metadata(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Adds the bearer token and the current correlation id to every outgoing call."""

    def __init__(self, token: Callable[[], str]) -> None:
        self.token = token

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        metadata = list(client_call_details.metadata or ())
        metadata.append(("authorization", f"Bearer {self.token()}"))
        correlation = CORRELATION_ID.get(None)
        if correlation and not any(k == "x-correlation-id" for k, _ in metadata):
            metadata.append(("x-correlation-id", correlation))
        details = client_call_details._replace(metadata=metadata)
        return await continuation(details, request)


def open_channel(
    address: str, token: Callable[[], str], *, timeout_seconds: float = 5.0
) -> grpc.aio.Channel:
    """A channel to ``address`` whose calls carry a token and the correlation id."""
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.service_config", service_config(timeout_seconds)),
            ("grpc.enable_retries", 1),
        ],
        interceptors=[_Metadata(token)],  # type: ignore[list-item]
    )
