"""Tracing end to end: one trace from a caller through the services' gRPC calls, the
events they append and the consumers that react to them, on the store feed and on
Kafka; process managers pass on the correlation id and the cause; log lines carry the
ids. Real servers over gRPC, spans kept in memory."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from civitas.cases.v1 import cases_pb2_grpc as cpb_grpc
from civitas.chassis.client import open_channel
from civitas.chassis.logs import configure_logging
from civitas.chassis.settings import TraceSettings
from civitas.eventkit import (
    EventStore,
    ManualClock,
    NewEvent,
    RecordedEvent,
    SqliteEventStore,
    StreamState,
)
from civitas.eventkit.hashing import GENESIS, canonical_json, chain, content_digest
from civitas.eventkit.kafka import events_topic
from civitas.eventkit.tracing import continuing, current_trace_context
from civitas.funds.v1 import funds_pb2_grpc as fpb_grpc
from civitas.volunteers.domain.volunteers import volunteer_id_for_member
from tests.support.cases_platform import platform
from tests.support.funding_saga import (
    SECRETARY,
    approve,
    ask,
    case_in_progress,
    district,
    expenditure,
    open_the_books,
    outcome,
)
from tests.support.platform import address_of, free_port, service_env
from tests.support.processes import eventually, messages_on
from tests.support.tracing import ancestry, named, recording
from tests.support.volunteers_platform import attended_activity, profile_events, report
from tests.support.volunteers_platform import platform as volunteers_platform

TRACER = trace.get_tracer("tests")
CASES = "civitas.cases.v1.CasesService"
FUNDS = "civitas.funds.v1.FundsService"
PARTY_ORGS = "civitas.party_orgs.v1.PartyOrgsService"


def served(spans: list[ReadableSpan], method: str) -> ReadableSpan:
    """The one server span of ``method``."""
    found = [s for s in named(spans, method) if s.kind is SpanKind.SERVER]
    assert len(found) == 1, f"{len(found)} server spans of {method}"
    return found[0]


def only(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = named(spans, name)
    assert len(found) == 1, f"{len(found)} spans called {name!r}: {[s.name for s in spans]}"
    return found[0]


def trace_ids(*spans: ReadableSpan) -> set[int]:
    return {span.context.trace_id for span in spans if span.context is not None}


async def spans_called(exporter: object, *names: str, seconds: float = 30) -> list[ReadableSpan]:
    """Every span recorded, once one of each of ``names`` has ended."""
    finished = exporter.get_finished_spans  # type: ignore[attr-defined]

    async def ended() -> bool:
        return all(named(finished(), name) for name in names)

    await eventually(ended, f"spans {names}", seconds)
    return list(finished())


async def test_a_case_registered_and_dispatched_is_one_trace_down_to_resolve_grid(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with (
        platform(tmp_path, clock) as world,
        open_channel(f"127.0.0.1:{world.running.server.port}", None) as channel,
    ):
        stub = cpb_grpc.CasesServiceStub(channel)
        with recording() as exporter:
            with TRACER.start_as_current_span("operator") as root:
                case_id = await case_in_progress(stub)  # registered, ..., dispatched, accepted
            spans = await spans_called(exporter, f"{PARTY_ORGS}/ResolveGrid")
            registered = (await world.running.store.read_stream(f"case-{case_id}"))[0]
            register = served(spans, f"{CASES}/RegisterCase")
            appended = [s for s in named(spans, "append case") if s.parent == register.context]

            async def linked_batch() -> bool:
                return any(
                    link.context.span_id == appended[0].context.span_id
                    for span in exporter.get_finished_spans()
                    if span.name.endswith(" batch")
                    for link in span.links
                )

            await eventually(linked_batch, "a projection batch linked to the registration")

    resolve = served(spans, f"{PARTY_ORGS}/ResolveGrid")
    assert ancestry(spans, resolve) == [
        ("CLIENT", f"{PARTY_ORGS}/ResolveGrid"),
        ("SERVER", f"{CASES}/DispatchCase"),
        ("CLIENT", f"{CASES}/DispatchCase"),
        ("INTERNAL", "operator"),
    ]
    assert ancestry(spans, register)[-1] == ("INTERNAL", "operator")
    assert trace_ids(resolve, register, *appended) == trace_ids(root)  # type: ignore[arg-type]
    assert len(appended) == 1
    assert registered.trace_context is not None
    traceparent = registered.trace_context["traceparent"]
    assert traceparent.split("-")[1:3] == [
        format(root.get_span_context().trace_id, "032x"),
        format(appended[0].context.span_id, "016x"),
    ]


@pytest.mark.parametrize("feed", ["store", pytest.param("kafka", marks=pytest.mark.kafka)])
async def test_a_funding_saga_is_one_trace_from_the_request_to_the_outcome(
    tmp_path: Path, clock: ManualClock, feed: str, request: pytest.FixtureRequest
) -> None:
    extra, seconds = {}, 30.0
    if feed == "kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        namespace = f"t{uuid.uuid4().hex[:10]}"
        extra = {"CIVITAS_KAFKA_BOOTSTRAP": bootstrap, "CIVITAS_KAFKA_NAMESPACE": namespace}
        seconds = 90.0
    async with (
        district(tmp_path, clock, extra) as services,
        services.funds_up() as plain_funds,
        services.cases_up(),
    ):
        assert services.cases is not None
        assert services.funds is not None
        await open_the_books(plain_funds)
        async with (
            open_channel(f"127.0.0.1:{services.cases.server.port}", None) as to_cases,
            open_channel(f"127.0.0.1:{services.funds.server.port}", None) as to_funds,
        ):
            cases = cpb_grpc.CasesServiceStub(to_cases)
            funds = fpb_grpc.FundsServiceStub(to_funds)
            case_id = await case_in_progress(cases)
            with recording() as exporter:
                with TRACER.start_as_current_span("saga") as root:
                    expenditure_id = await ask(cases, case_id, 1_000)
                    await expenditure(funds, expenditure_id, seconds)
                    await approve(funds, expenditure_id, SECRETARY)
                    await outcome(cases, case_id, seconds)
                spans = await spans_called(
                    exporter, "cases.funding_outcomes ExpenditureDisbursed", seconds=seconds
                )
        if feed == "kafka":
            messages = await messages_on(bootstrap, events_topic("cases", namespace))

    requested = only(spans, "funds.case_requests CaseFundingRequested")
    settled = only(spans, "funds.case_settlement ExpenditureApproved")
    recorded = only(spans, "cases.funding_outcomes ExpenditureDisbursed")
    assert trace_ids(requested, settled, recorded) == trace_ids(root)  # type: ignore[arg-type]
    assert ancestry(spans, requested)[:3] == [
        ("INTERNAL", "append case"),
        ("SERVER", f"{CASES}/RequestFunds"),
        ("CLIENT", f"{CASES}/RequestFunds"),
    ]
    chain_of_outcome = ancestry(spans, recorded)
    assert chain_of_outcome[0] == ("INTERNAL", "append expenditure")
    assert ("CONSUMER", "funds.case_settlement ExpenditureApproved") in chain_of_outcome
    assert ("SERVER", f"{FUNDS}/ApproveExpenditure") in chain_of_outcome
    assert chain_of_outcome[-1] == ("INTERNAL", "saga")
    assert [s for s in named(spans, "append case") if s.parent == recorded.context]
    if feed == "kafka":
        asked = [m for m in messages if b"CaseFundingRequested" in (m[1] or b"")]
        assert len(asked) == 1
        header = asked[0][2]["traceparent"].decode()
        assert header == json.loads(asked[0][1] or b"{}")["trace_context"]["traceparent"]
        assert header.split("-")[1] == format(root.get_span_context().trace_id, "032x")


async def test_verified_hours_reach_the_card_with_their_correlation_id_trace_and_cause(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with volunteers_platform(tmp_path, clock) as world:
        member = await report(world)

        async def profiled() -> bool:
            return bool(await profile_events(world, member))

        await eventually(profiled, "the volunteer profile")
        with recording() as exporter:
            await attended_activity(world, volunteer_id_for_member(member))
            spans = await spans_called(exporter, f"{PARTY_ORGS}/RecordCardActivity")
        verified = [
            e for e in await world.volunteers.store.read_all(after=0) if e.type == "HoursVerified"
        ]
        on_card = [
            e
            for e in await world.party.store.read_stream(f"member-{member}")
            if e.type == "CardActivityRecorded"
        ]

    assert len(verified) == len(on_card) == 1
    assert verified[0].correlation_id
    assert on_card[0].correlation_id == verified[0].correlation_id
    assert on_card[0].causation_id == str(verified[0].event_id)
    card_call = served(spans, f"{PARTY_ORGS}/RecordCardActivity")
    assert ("CONSUMER", "volunteers.hours_to_cards HoursVerified") in ancestry(spans, card_call)
    assert ("SERVER", "civitas.volunteers.v1.VolunteersService/VerifyHours") in ancestry(
        spans, card_call
    )


@pytest.fixture
def service_logs() -> Iterator[None]:
    """Logging as a service configures it, undone afterwards."""
    configure_logging("volunteers")
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if type(handler).__name__ == "_CivitasHandler":
            root.removeHandler(handler)


def test_a_process_managers_log_lines_carry_the_trace_and_correlation_ids(
    service_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with recording(), TRACER.start_as_current_span("verify") as cause:
        context = current_trace_context()
    event = RecordedEvent(
        uuid.uuid4(),
        "activity-1",
        0,
        7,
        "HoursVerified",
        1,
        datetime.now(UTC),
        "staff",
        "verify-42",
        None,
        {},
        b"",
        trace_context=context,
    )
    with recording(), continuing("volunteers.hours_to_cards", event):
        structlog.get_logger("civitas.test").info("recording the hours")
        logging.getLogger("civitas.eventkit.process").warning("party_orgs unavailable")
        reaction = trace.get_current_span().get_span_context()

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["recording the hours", "party_orgs unavailable"]
    for line in lines:
        assert line["correlation_id"] == "verify-42"
        assert line["trace_id"] == format(cause.get_span_context().trace_id, "032x")
        assert line["span_id"] == format(reaction.span_id, "016x")


async def test_an_event_keeps_its_trace_context_outside_its_hash(
    store: EventStore, clock: ManualClock
) -> None:
    context = {"traceparent": f"00-{'a1' * 16}-{'b2' * 8}-01", "tracestate": "civitas=1"}
    event = NewEvent("CaseRegistered", {"n": 1}, occurred_at=clock.now(), trace_context=context)
    await store.append("case-1", [event], StreamState.NO_STREAM)
    await store.append("case-2", [NewEvent("CaseRegistered", {"n": 2})], StreamState.NO_STREAM)

    (read,) = await store.read_stream("case-1")
    second = (await store.read_all(after=0))[-1]
    digest = content_digest(
        stream_id="case-1",
        event_id=event.event_id,
        type=event.type,
        schema_version=1,
        occurred_at=clock.now(),
        actor=None,
        correlation_id=None,
        causation_id=None,
        data_json=canonical_json({"n": 1}),
    )
    assert read.trace_context == context
    assert second.trace_context is None
    assert read.hash == chain(GENESIS, digest)


async def test_a_sqlite_store_from_before_trace_contexts_gets_the_column_on_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    old = SqliteEventStore(path)
    await old.append("case-1", [NewEvent("CaseRegistered", {})], StreamState.NO_STREAM)
    await old.close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE events DROP COLUMN trace_context")  # as stores were made
        conn.execute("DROP TABLE schema_migrations")

    reopened = SqliteEventStore(path)
    try:
        context = {"traceparent": f"00-{'c3' * 16}-{'d4' * 8}-01"}
        await reopened.append("case-1", [NewEvent("CaseClassified", {}, trace_context=context)], 0)
        events = await reopened.read_stream("case-1")
    finally:
        await reopened.close()

    assert [e.trace_context for e in events] == [None, context]


@pytest.mark.slow
async def test_a_service_with_a_file_exporter_writes_its_spans_there_by_the_time_it_stops(
    tmp_path: Path,
) -> None:
    spans_file = tmp_path / "traces.jsonl"
    env = service_env(tmp_path, free_port(), free_port())
    env["CIVITAS_PARTY_ORGS_TRACE_EXPORTER"] = f"file:{spans_file}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "civitas.party_orgs",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        assert b"ready on" in await asyncio.wait_for(process.stdout.readline(), 60)
        caller = f"00-{'e5' * 16}-{'f6' * 8}-01"
        async with grpc.aio.insecure_channel(address_of(env, "party_orgs")) as channel:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), metadata=[("traceparent", caller)]
            )
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]

    (check,) = [s for s in spans if s["name"] == "grpc.health.v1.Health/Check"]
    assert check["context"]["trace_id"] == f"0x{'e5' * 16}"
    assert check["parent_id"] == f"0x{'f6' * 8}"
    assert check["kind"] == "SpanKind.SERVER"
    assert check["resource"]["attributes"]["service.name"] == "party_orgs"


def test_tracing_is_off_unless_an_exporter_or_endpoint_is_named() -> None:
    assert TraceSettings.from_env("cases", {}).exporter is None
    endpoint = TraceSettings.from_env("cases", {"CIVITAS_OTLP_ENDPOINT": "http://collector:4317"})
    on_file = TraceSettings.from_env("cases", {"CIVITAS_CASES_TRACE_EXPORTER": "file:var/t.jsonl"})
    assert (endpoint.exporter, endpoint.otlp_endpoint) == ("otlp", "http://collector:4317")
    assert (on_file.exporter, on_file.file) == ("file", Path("var/t.jsonl"))
    with pytest.raises(ValueError, match="needs CIVITAS_OTLP_ENDPOINT"):
        TraceSettings.from_env("cases", {"CIVITAS_TRACE_EXPORTER": "otlp"})
    with pytest.raises(ValueError, match="otlp, console, file:<path> or none"):
        TraceSettings.from_env("cases", {"CIVITAS_TRACE_EXPORTER": "jaeger"})
    sampled = {"CIVITAS_TRACE_EXPORTER": "console", "CIVITAS_TRACE_SAMPLE_RATIO": "0.1"}
    assert (endpoint.sample_ratio, TraceSettings.from_env("cases", sampled).sample_ratio) == (
        1.0,
        0.1,
    )
    with pytest.raises(ValueError, match="a number from 0 to 1, not '10%'"):
        TraceSettings.from_env("cases", {**sampled, "CIVITAS_TRACE_SAMPLE_RATIO": "10%"})
