"""Spans recorded in memory while a test asks for them.

The SDK's tracer provider can be installed once per process, so it is installed once,
with a sampler that records only inside :func:`recording`: the other tests of the run
keep the cost of tracing off (non-recording spans), and no span piles up in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult


class _WhileRecording(Sampler):
    """Samples every span while a test records, none otherwise."""

    on = False

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP)

    def get_description(self) -> str:
        return "while a test records"


_SAMPLER = _WhileRecording()
_EXPORTER = InMemorySpanExporter()


def _installed() -> None:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(sampler=_SAMPLER)
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)


@contextlib.contextmanager
def recording() -> Iterator[InMemorySpanExporter]:
    """Record every span made inside (in any service of the process) in the exporter
    yielded."""
    _installed()
    _EXPORTER.clear()
    _SAMPLER.on = True
    try:
        yield _EXPORTER
    finally:
        _SAMPLER.on = False


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    """The spans called ``name``, in the order they ended."""
    return [span for span in spans if span.name == name]


def ancestry(spans: Sequence[ReadableSpan], span: ReadableSpan) -> list[tuple[str, str]]:
    """The kind and name of each of ``span``'s parents, nearest first, as far as the
    recorded spans go."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    chain = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        found = by_id[parent.span_id]
        chain.append((found.kind.name, found.name))
        parent = found.parent
    return chain
