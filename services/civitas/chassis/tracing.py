"""Turning tracing on for a service, and the spans of its gRPC edge.

Off by default: no tracer provider is installed, so every span is the OpenTelemetry
API's non-recording one (an incoming ``traceparent`` still passes through to the
events a call records and the calls it makes). :func:`configure_tracing` installs the
SDK's provider with a batching exporter when the settings name one.

The gRPC spans are made here rather than by the OpenTelemetry gRPC instrumentation:
the chassis's interceptors already see every call, with its correlation id and its
status as the edge decides it, so one more interceptor per call would add only cost.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, MutableSequence
from pathlib import Path
from typing import IO

import grpc
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from civitas.eventkit.tracing import W3C, context_of

from .settings import TraceSettings

tracer = trace.get_tracer("civitas.chassis")

SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
"""Codes that mark a server span as failed (OpenTelemetry's gRPC conventions): the
others are the caller's mistake or a refusal, and the server did its job."""


def configure_tracing(service: str, settings: TraceSettings) -> TracerProvider | None:
    """Install a tracer provider that sends ``service``'s spans where ``settings`` say,
    or none when tracing is off. The caller shuts it down on exit (flushing the batch)."""
    if settings.exporter is None:
        return None
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        resource=Resource.create({"service.name": service, "service.namespace": "civitas"}),
    )
    provider.add_span_processor(BatchSpanProcessor(_exporter(service, settings)))
    trace.set_tracer_provider(provider)
    return provider


def _exporter(service: str, settings: TraceSettings) -> SpanExporter:
    if settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=settings.otlp_endpoint)
    if settings.file is not None:
        return ConsoleSpanExporter(service, out=_append_only(settings.file), formatter=_line)
    return ConsoleSpanExporter(service, out=sys.stderr, formatter=_line)


def _append_only(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", encoding="utf-8")  # kept open while the service runs


def _line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


@contextlib.contextmanager
def server_span(path: str, metadata: dict[str, str]) -> Iterator[Span]:
    """The span of one call served, a child of the caller's trace when its metadata
    carries a ``traceparent``."""
    service, _, method = path.lstrip("/").partition("/")
    with tracer.start_as_current_span(
        path.lstrip("/"),
        context=context_of(metadata),
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def end_status(span: Span, code: grpc.StatusCode, server: bool) -> None:
    """Record a call's status code on its span; an error by OpenTelemetry's rules (every
    code but OK on a client; the server's own failures on a server)."""
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in SERVER_ERRORS or (not server and code is not grpc.StatusCode.OK):
        span.set_status(Status(StatusCode.ERROR, code.name))


@contextlib.contextmanager
def client_span(method: str, metadata: MutableSequence[tuple[str, str]]) -> Iterator[Span]:
    """The span of one call made, its context added to the call's ``metadata``."""
    service, _, name = method.lstrip("/").partition("/")
    with tracer.start_as_current_span(
        method.lstrip("/"),
        kind=SpanKind.CLIENT,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        carrier: dict[str, str] = {}
        W3C.inject(carrier)
        metadata.extend(carrier.items())
        yield span
