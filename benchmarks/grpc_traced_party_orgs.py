"""party_orgs with tracing on, for ``python -m benchmarks.grpc_commands``.

Runs party_orgs as ``python -m civitas.party_orgs`` does, with the OpenTelemetry SDK's
tracer provider installed first: every span sampled and recorded, batched by a
``BatchSpanProcessor``, and handed to an exporter that drops it. What it measures is
tracing's cost inside the service; encoding the spans for a collector comes on top
(about 60 µs a span as OTLP protobuf or as JSON on the benchmark machine, in the
processor's thread). ``BENCH_GRPC_TRACE_SAMPLE_RATIO`` (default 1: every trace) records
that share of the traces instead, as ``CIVITAS_TRACE_SAMPLE_RATIO`` would.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased


class Dropped(SpanExporter):
    """Takes every batch of spans and keeps none."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def main() -> None:
    ratio = float(os.environ.get("BENCH_GRPC_TRACE_SAMPLE_RATIO", "1"))
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(ratio)),
        resource=Resource.create({"service.name": "party_orgs"}),
    )
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    trace.set_tracer_provider(provider)
    from civitas.chassis.service import serve
    from civitas.party_orgs.bootstrap import run_party_orgs

    try:
        serve("party_orgs", run_party_orgs)
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
