"""Nothing a caller sends can stop a projection: every value at the longest the edge
allows, sent through each service's commands (by a caller whose subject and
correlation id are as long as they may be too), is applied by insights' projections
into read models on PostgreSQL, whose columns, unlike SQLite's, have lengths."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from civitas.cases.bootstrap import run_cases
from civitas.cases.v1 import cases_pb2 as cpb
from civitas.cases.v1 import cases_pb2_grpc as cgrpc
from civitas.chassis.auth import Role, TokenAuthority
from civitas.chassis.limits import DEFAULT_CHARS, FREE_TEXT_CHARS, LONGER_CHARS
from civitas.funds.bootstrap import run_funds
from civitas.funds.v1 import funds_pb2 as fpb
from civitas.funds.v1 import funds_pb2_grpc as fgrpc
from civitas.insights.bootstrap import run_insights
from civitas.party_orgs.bootstrap import run_party_orgs
from civitas.party_orgs.v1 import party_orgs_pb2 as po
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as pogrpc
from civitas.volunteers.bootstrap import run_volunteers
from civitas.volunteers.v1 import volunteers_pb2 as vpb
from civitas.volunteers.v1 import volunteers_pb2_grpc as vgrpc
from tests.conftest import POSTGRES_URL, missing_dependency, postgres_reachable
from tests.support.cases_platform import SECRET, settings_for
from tests.support.processes import last_versions, streams_applied

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NAME = "名" * DEFAULT_CHARS
TEXT = "说" * FREE_TEXT_CHARS
KEY = "k" * DEFAULT_CHARS
SUBJECT = "s" * 64  # the longest subject a token may name
CORRELATION = "c" * 64  # the longest x-correlation-id the edge takes
WHEN = Timestamp(seconds=1_767_225_600)  # 2026-01-01


def caller() -> list[tuple[str, str]]:
    token = TokenAuthority(SECRET).mint(SUBJECT, [Role.DISTRICT_ADMIN], ["QH"])
    return [("authorization", f"Bearer {token}"), ("x-correlation-id", CORRELATION)]


@pytest.fixture
async def insights_schema() -> AsyncIterator[str]:
    if not await postgres_reachable():
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}")
    schema = f"longest_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


async def party_orgs_at_their_longest(stub: pogrpc.PartyOrgsServiceStub) -> str:
    """A district whose every name, address, id and text is as long as it may be; the
    member's id."""
    m = caller()
    addresses = [f"{n:03}" + "路" * (DEFAULT_CHARS - 3) for n in range(20)]
    for code, population, covered in [
        ("QH", 10_000_000, []),
        ("QH-01", 0, []),
        ("QH-01-01", 0, []),
        ("QH-01-01-G01", 0, addresses),
    ]:
        await stub.RegisterAdminUnit(
            po.RegisterAdminUnitRequest(
                code=code, name=NAME, population=population, addresses=covered
            ),
            metadata=m,
        )
    street = await stub.FoundPartyOrg(
        po.FoundPartyOrgRequest(
            kind=po.PARTY_ORG_KIND_STREET_WORKING_COMMITTEE, name=NAME, unit_code="QH-01"
        ),
        metadata=m,
    )
    committee = await stub.FoundPartyOrg(
        po.FoundPartyOrgRequest(
            kind=po.PARTY_ORG_KIND_COMMUNITY_COMMITTEE,
            name=NAME,
            parent_id=street.org.org_id,
            unit_code="QH-01-01",
        ),
        metadata=m,
    )
    branch = await stub.FoundPartyOrg(
        po.FoundPartyOrgRequest(
            kind=po.PARTY_ORG_KIND_GRID_BRANCH,
            name=NAME,
            parent_id=committee.org.org_id,
            unit_code="QH-01-01-G01",
        ),
        metadata=m,
    )
    member = await stub.AdmitMember(
        po.AdmitMemberRequest(
            member_number="M" * 40,  # the longest member number
            name=NAME,
            org_id=branch.org.org_id,
            working=True,
            employer=NAME,
        ),
        metadata=m,
    )
    member_id = member.member.member_id
    await stub.ReportToCommunity(
        po.ReportToCommunityRequest(member_id=member_id, community_code="QH-01-01"), metadata=m
    )
    await stub.RecordCardActivity(
        po.RecordCardActivityRequest(
            member_id=member_id,
            activity=po.CardActivity(
                activity_id=KEY,
                kind=po.CARD_ACTIVITY_KIND_MEETING,
                description=TEXT,
                tenths_of_hours=20,
                occurred_at=WHEN,
            ),
        ),
        metadata=m,
    )
    await stub.RecordResidentFeedback(
        po.RecordResidentFeedbackRequest(
            member_id=member_id,
            feedback=po.ResidentFeedback(feedback_id=KEY, rating=5, comment=TEXT),
        ),
        metadata=m,
    )
    for post in (NAME, "网格长"):  # the grid's head takes its cases
        await stub.AssignGridPost(
            po.AssignGridPostRequest(grid_code="QH-01-01-G01", post=post, holder=NAME, duty=TEXT),
            metadata=m,
        )
    await stub.SeatCommitteeMember(
        po.SeatCommitteeMemberRequest(
            org_id=committee.org.org_id,
            seat=po.CommitteeSeat(role=po.SEAT_ROLE_SECRETARY, holder=NAME, member_id=member_id),
        ),
        metadata=m,
    )
    return member_id


async def cases_at_their_longest(stub: cgrpc.CasesServiceStub) -> None:
    m = caller()
    case = await stub.RegisterCase(
        cpb.RegisterCaseRequest(
            channel=cpb.CHANNEL_ONLINE,
            community_code="QH-01-01",
            address="路" * LONGER_CHARS["address"],
            description=TEXT,
            urgency=cpb.URGENCY_NORMAL,
            resident_name=NAME,
            resident_phone="+86 138-0000-0000",
        ),
        metadata=m,
    )
    case_id = case.case.case_id
    for request in (
        cpb.ClassifyCaseRequest(case_id=case_id, category=NAME, urgency=cpb.URGENCY_LOW),
        cpb.FileCaseRequest(case_id=case_id),
        cpb.DispatchCaseRequest(case_id=case_id, grid_code="QH-01-01-G01"),
        cpb.AcceptCaseRequest(case_id=case_id, accepted_by=NAME),
        cpb.AddProgressNoteRequest(case_id=case_id, note=TEXT),
        cpb.OpenMediationRequest(case_id=case_id, mediator=NAME),
        cpb.RecordMediationSessionRequest(case_id=case_id, summary=TEXT),
        cpb.ConcludeMediationRequest(case_id=case_id, agreed=True, terms=TEXT),
        cpb.ResolveCaseRequest(case_id=case_id, resolution=TEXT),
        cpb.FollowUpCaseRequest(case_id=case_id, satisfaction=2, comment=TEXT),
        cpb.ReopenCaseRequest(case_id=case_id, reason=TEXT),
    ):
        method = type(request).__name__.removesuffix("Request")
        await getattr(stub, method)(request, metadata=m)


async def volunteers_at_their_longest(stub: vgrpc.VolunteersServiceStub, member_id: str) -> None:
    m = caller()
    skills = [f"{n:02}" + "技" * 48 for n in range(50)]  # 50 skills of 50 characters
    await stub.RegisterVolunteer(
        vpb.RegisterVolunteerRequest(
            name=NAME, phone="13800000000", community_code="QH-01-01", skills=skills
        ),
        metadata=m,
    )
    await stub.CreateActivity(
        vpb.CreateActivityRequest(
            brand=vpb.BRAND_ELDERLY_DINING,
            title="题" * LONGER_CHARS["title"],
            organizer=NAME,
            community_code="QH-01-01",
            starts_at=WHEN,
            ends_at=Timestamp(seconds=WHEN.seconds + 3600),
            capacity=10,
            skills=skills,
        ),
        metadata=m,
    )


async def funds_at_their_longest(stub: fgrpc.FundsServiceStub) -> None:
    m = caller()
    longest_key = "k" + "y" * 40  # an account key's longest
    year = datetime.now(UTC).year  # the open fiscal year, on the service's own clock
    await stub.AllocateYear(
        fpb.AllocateYearRequest(community_code="QH-01-01", year=year), metadata=m
    )
    await stub.OpenAccount(
        fpb.OpenAccountRequest(
            kind=fpb.ACCOUNT_KIND_PAYEE, owner_code="QH-01-01-G01", key=longest_key, name=NAME
        ),
        metadata=m,
    )
    await stub.Transfer(
        fpb.TransferRequest(
            idempotency_key=KEY,
            from_account="source:QH:budget",  # a district admin's transfer from the budget
            to_account="fund:QH-01-01:special",
            amount_fen=100,
            memo=TEXT,
        ),
        metadata=m,
    )
    await stub.OpenAccount(
        fpb.OpenAccountRequest(
            kind=fpb.ACCOUNT_KIND_SOURCE, owner_code="QH", key=longest_key, name=NAME
        ),
        metadata=m,
    )
    await stub.AssignTask(
        fpb.AssignTaskRequest(
            idempotency_key=KEY,
            department_account=f"source:QH:{longest_key}",
            community_code="QH-01-01",
            title="题" * LONGER_CHARS["title"],
            amount_fen=100,
        ),
        metadata=m,
    )


async def test_the_longest_values_the_edge_allows_never_stop_insights(
    tmp_path: Path, insights_schema: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        party = await stack.enter_async_context(
            run_party_orgs(settings_for("party_orgs", tmp_path), port=0)
        )
        peers = {"CIVITAS_PARTY_ORGS_ADDRESS": f"127.0.0.1:{party.server.port}"}
        cases = await stack.enter_async_context(
            run_cases(settings_for("cases", tmp_path, **peers), port=0)
        )
        volunteers = await stack.enter_async_context(
            run_volunteers(settings_for("volunteers", tmp_path, **peers), port=0)
        )
        funds = await stack.enter_async_context(run_funds(settings_for("funds", tmp_path), port=0))
        stubs: dict[str, Any] = {}
        for name, running, stub in [
            ("party_orgs", party, pogrpc.PartyOrgsServiceStub),
            ("cases", cases, cgrpc.CasesServiceStub),
            ("volunteers", volunteers, vgrpc.VolunteersServiceStub),
            ("funds", funds, fgrpc.FundsServiceStub),
        ]:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}")
            stack.push_async_callback(channel.close)
            stubs[name] = stub(channel)
        member_id = await party_orgs_at_their_longest(stubs["party_orgs"])
        await cases_at_their_longest(stubs["cases"])
        await volunteers_at_their_longest(stubs["volunteers"], member_id)
        await funds_at_their_longest(stubs["funds"])

        insights = await stack.enter_async_context(
            run_insights(
                settings_for("insights", tmp_path, CIVITAS_INSIGHTS_READ_MODEL_URL=insights_schema),
                port=0,
                http_port=0,
            )
        )
        stores = [party.store, cases.store, volunteers.store, funds.store]
        wanted = {
            runner.projection.name: await last_versions(store, runner.projection.filter)
            for runner, store in zip(insights.projections, stores, strict=True)
        }
        assert all(wanted.values()), "every projection has events to apply"
        await streams_applied(
            insights.projections[0].engine, wanted, "insights to apply the longest values", 60
        )
