"""Tracing across the event log: a span per append and per consumer batch, and the W3C
trace context an event carries from the command that recorded it to every consumer.

Only the OpenTelemetry API is used here. With no SDK tracer provider installed (tracing
off, the default) every span is the API's non-recording one: it passes an incoming
trace context through and costs next to nothing. A service turns tracing on by
installing a provider (:mod:`civitas.chassis.tracing`).

The correlation and causation ids of the work in hand live here too, beside the trace:
the gRPC edge sets them from a request's metadata, :func:`continuing` from the event a
process manager reacts to, and whatever is recorded or called meanwhile carries them on.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from .records import RecordedEvent, stream_parts

tracer = trace.get_tracer("civitas.eventkit")
W3C = TraceContextTextMapPropagator()
"""``traceparent`` and ``tracestate``, whatever propagators the environment names: what
an event stores and a Kafka message carries is the W3C form, and nothing else."""

CORRELATION_ID: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id")
CAUSATION_ID: contextvars.ContextVar[str] = contextvars.ContextVar("causation_id")

MAX_LINKS = 32
"""A batch span links at most this many events' traces (a catch-up batch holds hundreds)."""


def current_trace_context() -> dict[str, str] | None:
    """The W3C ``traceparent`` (and ``tracestate``) of the current span, or None when
    there is no valid span (tracing off and no caller's trace to pass on)."""
    carrier: dict[str, str] = {}
    W3C.inject(carrier)
    return carrier or None


def context_of(carrier: Mapping[str, str] | None) -> Context | None:
    """The trace context a ``traceparent`` carrier names (an event's, a request's
    metadata), or None when it names none (a missing or malformed one is no trace)."""
    if not carrier or "traceparent" not in carrier:
        return None
    context = W3C.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


@contextlib.contextmanager
def appending(stream_id: str, count: int) -> Iterator[dict[str, str] | None]:
    """A span around one append to ``stream_id``; yields the trace context the
    appended events record."""
    category = stream_parts(stream_id)[0]
    attributes: Attributes = {"civitas.stream_id": stream_id, "civitas.event_count": count}
    with tracer.start_as_current_span(f"append {category}", attributes=attributes):
        yield current_trace_context()


@contextlib.contextmanager
def consuming(consumer: str, batch: Sequence[RecordedEvent]) -> Iterator[None]:
    """A span around one batch a projection or process manager handles, linked to the
    trace of each event in it (a batch has many causes, so it is no one's child)."""
    links = [
        Link(trace.get_current_span(context).get_span_context())
        for context in (context_of(event.trace_context) for event in batch[:MAX_LINKS])
        if context is not None
    ]
    attributes: Attributes = {
        "civitas.consumer": consumer,
        "messaging.batch.message_count": len(batch),
    }
    with tracer.start_as_current_span(
        f"{consumer} batch", kind=SpanKind.CONSUMER, links=links, attributes=attributes
    ):
        yield


@contextlib.contextmanager
def continuing(consumer: str, event: RecordedEvent) -> Iterator[None]:
    """A process manager's reaction to ``event``: a span that continues the event's
    trace as its child, with the event's correlation id and the event as the cause of
    whatever the reaction records or calls."""
    attributes: Attributes = {
        "civitas.consumer": consumer,
        "civitas.event_id": str(event.event_id),
        "civitas.stream_id": event.stream_id,
        "civitas.stream_version": event.stream_version,
    }
    with tracer.start_as_current_span(
        f"{consumer} {event.type}",
        context=context_of(event.trace_context),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ):
        causation = CAUSATION_ID.set(str(event.event_id))
        correlation = CORRELATION_ID.set(event.correlation_id) if event.correlation_id else None
        try:
            yield
        finally:
            if correlation is not None:
                CORRELATION_ID.reset(correlation)
            CAUSATION_ID.reset(causation)


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def traced_batches(handle: Handler) -> Handler:
    """Decorate a consumer's ``_handle(self, batch, ...)``: each batch in a
    :func:`consuming` span named after the consumer (``self.name``)."""

    @functools.wraps(handle)
    async def traced(runner: Any, batch: Sequence[RecordedEvent], *args: Any, **kw: Any) -> Any:
        with consuming(runner.name, batch):
            return await handle(runner, batch, *args, **kw)

    return cast(Handler, traced)


def traced_reactions(react: Handler) -> Handler:
    """Decorate a process manager runner's ``_react(self, event)``: each reaction
    :func:`continuing` the event's trace, correlation id and cause."""

    @functools.wraps(react)
    async def traced(runner: Any, event: RecordedEvent, *args: Any, **kw: Any) -> Any:
        with continuing(runner.name, event):
            return await react(runner, event, *args, **kw)

    return cast(Handler, traced)


def current_correlation_id() -> str | None:
    """The correlation id of the work in hand, if any."""
    return CORRELATION_ID.get(None)


def current_causation_id() -> str | None:
    """The id of the event (or request) that caused the work in hand, if any."""
    return CAUSATION_ID.get(None)
