"""insights against the real services: a small demo district loaded over gRPC, the
projections fed from the services' stores, and every figure checked against an
independent count over the events themselves."""

from __future__ import annotations

import contextlib
import statistics
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from civitas.cases.bootstrap import run_cases
from civitas.chassis.auth import Role, TokenAuthority
from civitas.demo import load_cases, load_funds, load_party_orgs, load_volunteers
from civitas.eventkit import EventStore, RecordedEvent
from civitas.funds.bootstrap import run_funds
from civitas.insights.bootstrap import RunningInsights, run_insights
from civitas.insights.v1 import insights_pb2 as pb
from civitas.insights.v1 import insights_pb2_grpc as pb_grpc
from civitas.party_orgs.bootstrap import run_party_orgs
from civitas.party_orgs.domain.members import member_id_for
from civitas.party_orgs.v1 import party_orgs_pb2 as po
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as po_grpc
from civitas.volunteers.bootstrap import run_volunteers
from tests.conftest import POSTGRES_URL, missing_dependency, postgres_reachable
from tests.support.cases_platform import SECRET, settings_for
from tests.support.processes import last_versions, streams_applied

pytestmark = pytest.mark.slow
AUTHORITY = TokenAuthority(SECRET)
ADMIN = AUTHORITY.mint("demo", [Role.DISTRICT_ADMIN], ["QH"])
APPROVER = AUTHORITY.mint("demo-approver", [Role.DISTRICT_ADMIN], ["QH"])
READER = [("authorization", f"Bearer {AUTHORITY.mint('auditor', [Role.AUDITOR], ['QH'])}")]
MEMBER = member_id_for("QH000003")


@dataclass
class District:
    insights: RunningInsights
    stub: pb_grpc.InsightsServiceStub
    stores: dict[str, EventStore]

    async def events(self, service: str) -> list[RecordedEvent]:
        return await self.stores[service].read_all(after=0, limit=1_000_000)

    async def http(self, path: str, token: str | None = ADMIN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"http://127.0.0.1:{self.insights.http_port}{path}"
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as reply:
            return reply.status, await reply.json()


@contextlib.asynccontextmanager
async def district(
    tmp_path: Path, read_models: str | None = None, kafka: dict[str, str] | None = None
) -> AsyncIterator[District]:
    """Every service in this process on free ports, the demo loaded small; insights'
    read models in ``read_models`` (default: SQLite); every feed on Kafka when
    ``kafka`` names a broker and namespace."""
    feeds = kafka or {}
    async with contextlib.AsyncExitStack() as stack:
        party = await stack.enter_async_context(
            run_party_orgs(settings_for("party_orgs", tmp_path, **feeds), port=0)
        )
        peers = {"CIVITAS_PARTY_ORGS_ADDRESS": f"127.0.0.1:{party.server.port}", **feeds}
        cases = await stack.enter_async_context(
            run_cases(settings_for("cases", tmp_path, **peers), port=0)
        )
        volunteers = await stack.enter_async_context(
            run_volunteers(settings_for("volunteers", tmp_path, **peers), port=0)
        )
        funds = await stack.enter_async_context(
            run_funds(settings_for("funds", tmp_path, **feeds), port=0)
        )
        address = f"127.0.0.1:{party.server.port}"
        await load_party_orgs(address, ADMIN, members=60)
        async with grpc.aio.insecure_channel(address) as channel:
            await feedback_and_appraisal(po_grpc.PartyOrgsServiceStub(channel), MEMBER)
        await load_cases(f"127.0.0.1:{cases.server.port}", ADMIN, count=60)
        await load_volunteers(f"127.0.0.1:{volunteers.server.port}", ADMIN, 60, 6)
        await load_funds(f"127.0.0.1:{funds.server.port}", ADMIN, APPROVER, 10)
        insights = await stack.enter_async_context(
            run_insights(
                settings_for(
                    "insights",
                    tmp_path,
                    CIVITAS_CASES_ADDRESS=f"127.0.0.1:{cases.server.port}",
                    **read_model_setting(read_models),
                    **feeds,
                ),
                port=0,
                http_port=0,
            )
        )
        channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(f"127.0.0.1:{insights.server.port}")
        )
        stores = {
            "party_orgs": party.store,
            "cases": cases.store,
            "volunteers": volunteers.store,
            "funds": funds.store,
        }
        built = District(insights, pb_grpc.InsightsServiceStub(channel), stores)
        await caught_up(built)
        yield built


def read_model_setting(url: str | None) -> dict[str, str]:
    return {"CIVITAS_INSIGHTS_READ_MODEL_URL": url} if url else {}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def read_models(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """Where insights keeps its read models: SQLite, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield None
        return
    if not await postgres_reachable():
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}")
    schema = f"insights_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(POSTGRES_URL)
    await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


async def feedback_and_appraisal(stub: po_grpc.PartyOrgsServiceStub, member_id: str) -> None:
    admin = [("authorization", f"Bearer {ADMIN}")]
    at = Timestamp()
    at.FromDatetime(datetime(2026, 5, 4, 10, tzinfo=UTC))
    for n, rating in enumerate((5, 4)):
        await stub.RecordResidentFeedback(
            po.RecordResidentFeedbackRequest(
                member_id=member_id,
                feedback=po.ResidentFeedback(
                    feedback_id=f"fb-{n}", rating=rating, comment="帮助很大", recorded_at=at
                ),
            ),
            metadata=admin,
        )
    await stub.RateAppraisal(
        po.RateAppraisalRequest(
            member_id=member_id,
            appraisal=po.Appraisal(year=2025, rating=po.APPRAISAL_RATING_EXCELLENT),
        ),
        metadata=admin,
    )


async def caught_up(district: District) -> None:
    """Wait until every projection has applied, stream by stream, every event its
    source held when the wait began."""
    sources = ["party_orgs", "cases", "volunteers", "funds"]
    wanted = {
        runner.projection.name: await last_versions(
            district.stores[source], runner.projection.filter
        )
        for runner, source in zip(district.insights.projections, sources, strict=True)
    }
    engine = district.insights.projections[0].engine
    await streams_applied(engine, wanted, "the insights projections to catch up", seconds=90)


def expected_cases(events: list[RecordedEvent], prefix: str) -> dict[str, Any]:
    """Scorecard figures of requests, counted straight from cases' events."""
    registered: dict[str, datetime] = {}
    resolved: dict[str, datetime] = {}
    rating: dict[str, int] = {}
    for e in events:
        case = e.aggregate_id
        if e.type == "CaseRegistered" and e.data["community_code"].startswith(prefix):
            registered[case] = datetime.fromisoformat(e.data["registered_at"])
        elif case not in registered:
            continue
        elif e.type == "CaseResolved":
            resolved[case] = datetime.fromisoformat(e.data["resolved_at"])
        elif e.type == "CaseReopened":  # the case is open again, its rating reset
            resolved.pop(case, None)
            rating.pop(case, None)
        elif e.type == "CaseFollowedUp":
            rating[case] = e.data["satisfaction"]
    spans = [(resolved[c] - registered[c]).total_seconds() / 3600 for c in resolved]
    return {
        "requests_received": len(registered),
        "requests_resolved": len(resolved),
        "median_hours_to_resolve": statistics.median(spans) if spans else 0.0,
        "satisfaction_ratings": len(rating),
        "satisfaction": statistics.fmean(rating.values()) if rating else 0.0,
    }


async def test_scorecards_agree_with_the_events_at_every_level(
    tmp_path: Path, read_models: str | None
) -> None:
    async with district(tmp_path, read_models) as d:
        case_events = await d.events("cases")
        party_events = await d.events("party_orgs")
        volunteer_events = await d.events("volunteers")
        fund_events = await d.events("funds")
        district_card = (
            await d.stub.GetScorecard(pb.GetScorecardRequest(unit_code="QH"), metadata=READER)
        ).scorecard
        streets = (
            await d.stub.ListScorecards(pb.ListScorecardsRequest(parent_code="QH"), metadata=READER)
        ).scorecards
        busiest = Counter(
            e.data["community_code"] for e in case_events if e.type == "CaseRegistered"
        ).most_common(1)[0][0]
        community = (
            await d.stub.GetScorecard(pb.GetScorecardRequest(unit_code=busiest), metadata=READER)
        ).scorecard

    for card, prefix in ((district_card, "QH"), (community, busiest)):
        expected = expected_cases(case_events, prefix)
        got = {k: getattr(card, k) for k in expected}
        assert got == pytest.approx(expected), prefix
    assert district_card.requests_received == 60
    assert district_card.resolution_rate == pytest.approx(
        district_card.requests_resolved / district_card.requests_received
    )
    assert len(streets) == 12
    assert sum(s.requests_received for s in streets) == 60
    members = {e.stream_id for e in party_events if e.type == "MemberAdmitted"}
    reported = {e.stream_id for e in party_events if e.type == "ReportedToCommunity"}
    assert (district_card.party_members, district_card.working_members_reported) == (
        len(members),
        len(reported),
    )
    verified = sum(e.data["tenths_of_hours"] for e in volunteer_events if e.type == "HoursVerified")
    assert verified > 0
    assert district_card.volunteer_tenths_of_hours == verified
    assert sum(s.volunteer_tenths_of_hours for s in streets) == verified
    paid_out = sum(
        e.data["amount_fen"]
        for e in fund_events
        if e.type == "Debited"
        and e.stream_id.startswith("account-fund:")
        and e.data["to_account"].startswith("payee:")
    )
    brought_in = sum(
        e.data["amount_fen"]
        for e in fund_events
        if e.type == "Credited"
        and e.stream_id.startswith("account-fund:")
        and e.data["from_account"].startswith("source:")
    )
    assert paid_out > 0
    assert (district_card.funds_disbursed_fen, district_card.funds_allocated_fen) == (
        paid_out,
        brought_in,
    )
    assert district_card.funds_balance_fen == brought_in - paid_out
    assert district_card.population > 0


@pytest.mark.kafka
async def test_on_kafka_the_projections_agree_with_the_events_too(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    kafka = {"CIVITAS_KAFKA_BOOTSTRAP": kafka_bootstrap, "CIVITAS_KAFKA_NAMESPACE": namespace}
    async with district(tmp_path, kafka=kafka) as d:
        case_events = await d.events("cases")
        verified = sum(
            e.data["tenths_of_hours"]
            for e in await d.events("volunteers")
            if e.type == "HoursVerified"
        )
        card = (
            await d.stub.GetScorecard(pb.GetScorecardRequest(unit_code="QH"), metadata=READER)
        ).scorecard
        streets = (
            await d.stub.ListScorecards(pb.ListScorecardsRequest(parent_code="QH"), metadata=READER)
        ).scorecards

    expected = expected_cases(case_events, "QH")
    assert {k: getattr(card, k) for k in expected} == pytest.approx(expected)
    assert card.volunteer_tenths_of_hours == verified > 0
    assert sum(s.party_members for s in streets) == card.party_members == 60
    assert card.funds_disbursed_fen > 0


async def test_trend_member_card_timeline_and_statement_and_the_same_over_http(
    tmp_path: Path,
) -> None:
    async with district(tmp_path) as d:
        trend = (
            await d.stub.GetTrend(pb.GetTrendRequest(unit_code="QH", months=13), metadata=READER)
        ).points
        card = (
            await d.stub.GetMemberCard(pb.GetMemberCardRequest(member_id=MEMBER), metadata=READER)
        ).card
        case_id = next(
            e.aggregate_id for e in await d.events("cases") if e.type == "CaseFollowedUp"
        )
        timeline = (
            await d.stub.GetCaseTimeline(
                pb.GetCaseTimelineRequest(case_id=case_id), metadata=READER
            )
        ).timeline
        statement = (
            await d.stub.GetFundStatement(
                pb.GetFundStatementRequest(account_id="fund:QH-01-01:special"), metadata=READER
            )
        ).statement
        case_types = [e.type for e in await d.stores["cases"].read_stream(f"case-{case_id}")]
        http_card = await d.http(f"/api/members/{MEMBER}/card")
        http_scorecard = await d.http("/api/scorecards/QH-01")
        grpc_scorecard = await d.stub.GetScorecard(
            pb.GetScorecardRequest(unit_code="QH-01"), metadata=READER
        )
        refusals = [
            await d.http("/api/scorecards/QH", token=None),
            await d.http("/api/scorecards/QH", token="not-a-token"),
            await d.http("/api/scorecards/nowhere"),
            await d.http("/api/scorecards/QH-01-01-G01"),
            await d.http("/api/scorecards/QH/trend?months=99"),
            await d.http("/api/members/unknown/card"),
            await d.http("/api/cases/unknown/timeline"),
            await d.http(f"/api/members/{uuid.uuid4()}/card"),
            await d.http(f"/api/cases/{uuid.uuid4()}/timeline"),
            await d.http("/api/scorecards/QH/trend?months=%C2%B2"),  # "²": a digit to isdigit
        ]

    assert len(trend) == 13
    assert sum(p.requests_received for p in trend) == 60  # the demo's year, all in range
    assert sum(p.volunteer_tenths_of_hours for p in trend) > 0
    assert card.member_number == "QH000003"
    assert [f.rating for f in card.feedback] == [5, 4]
    assert card.mean_feedback_rating == pytest.approx(4.5)
    assert [(a.year, a.rating) for a in card.appraisals] == [(2025, "excellent")]
    assert card.org_name
    assert [e.type for e in timeline.entries] == case_types
    assert all("ciphertext" not in e.details_json for e in timeline.entries)
    assert statement.entries[0].amount_fen > 0
    assert statement.entries[-1].balance_fen == statement.balance_fen
    assert http_card[0] == 200
    assert http_card[1]["card"]["member_number"] == "QH000003"
    assert http_scorecard == (
        200,
        json_format.MessageToDict(
            grpc_scorecard,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        ),
    )
    assert [status for status, _ in refusals] == [401, 401, 400, 400, 400, 400, 400, 404, 404, 400]
    assert all(body["error"] for _, body in refusals)
