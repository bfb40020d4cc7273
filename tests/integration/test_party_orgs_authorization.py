"""Every party_orgs RPC against every role, out of scope, and with scope over one unit a
command touches but not another (table-driven)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from civitas.chassis.auth import Caller, Principal, Role
from civitas.errors import NotAllowed
from civitas.eventkit import ManualClock
from civitas.party_orgs.domain.members import AppraisalRating, CardActivityKind
from civitas.party_orgs.domain.orgs import OrgKind, SeatRole
from civitas.party_orgs.v1 import party_orgs_pb2 as pb
from tests.support.authorization import (
    ANY_SIGNED_IN,
    admits_exactly,
    refuses_another_street,
    refuses_scope,
    rows_cover_the_service,
)
from tests.support.party_orgs import World, build_world
from tests.support.volunteers_platform import platform

R = Role
UNITS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF}
ORGS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.PARTY_SECRETARY}
MEMBERS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF, R.PARTY_SECRETARY}
CARDS = {R.DISTRICT_ADMIN, R.COMMUNITY_STAFF, R.PARTY_SECRETARY, R.VOLUNTEER_COORDINATOR, R.SERVICE}
PAIRINGS = {R.DISTRICT_ADMIN, R.STREET_STAFF}
Command = Callable[[World, Caller], Awaitable[Any]]
WHEN = datetime(2026, 3, 1, 8, tzinfo=UTC)

COMMANDS: dict[str, tuple[Command, set[Role]]] = {
    "RegisterAdminUnit": (
        lambda w, c: w.app.register_unit(c, "QH-01-02", "双塘社区", 10, []),
        UNITS,
    ),
    "RenameAdminUnit": (lambda w, c: w.app.rename_unit(c, "QH-01-01", "新名"), UNITS),
    "OpenServiceCentre": (lambda w, c: w.app.open_service_centre(c, "QH-01", "服务中心"), UNITS),
    "AssignGridPost": (
        lambda w, c: w.app.assign_post(c, "QH-01-01-G01", "楼栋长", "周", None, "联系住户"),
        UNITS,
    ),
    "VacateGridPost": (lambda w, c: w.app.vacate_post(c, "QH-01-01-G01", "网格长"), UNITS),
    "FoundPartyOrg": (
        lambda w, c: w.app.found_org(c, OrgKind.BRANCH, "新支部", w.organ, "QH-01"),
        ORGS,
    ),
    "MovePartyOrg": (lambda w, c: w.app.move_org(c, w.empty, w.community_committee), ORGS),
    "SeatCommitteeMember": (
        lambda w, c: w.app.seat(c, w.community_committee, SeatRole.MEMBER, "新委员", None, None),
        ORGS,
    ),
    "UnseatCommitteeMember": (
        lambda w, c: w.app.unseat(c, w.community_committee, SeatRole.SECRETARY, "张书记", None),
        ORGS,
    ),
    "DissolvePartyOrg": (lambda w, c: w.app.dissolve_org(c, w.empty, "合并"), ORGS),
    "AdmitMember": (
        lambda w, c: w.app.admit_member(c, "M-100", "新党员", w.grid_branch, False, None),
        MEMBERS,
    ),
    "StartMemberTransfer": (
        lambda w, c: w.app.start_transfer(c, w.member, w.organ_branch),
        MEMBERS,
    ),
    "ReceiveMemberTransfer": (lambda w, c: w.app.receive_transfer(c, w.transferring), MEMBERS),
    "CancelMemberTransfer": (
        lambda w, c: w.app.cancel_transfer(c, w.transferring, "撤回"),
        MEMBERS,
    ),
    "ReportToCommunity": (lambda w, c: w.app.report_to_community(c, w.member, "QH-01-01"), MEMBERS),
    "RecordCardActivity": (
        lambda w, c: w.app.record_activity(
            c, w.member, "a1", CardActivityKind.MEETING, "组织生活会", 20, WHEN
        ),
        CARDS,
    ),
    "RecordResidentFeedback": (
        lambda w, c: w.app.record_feedback(c, w.member, "f1", 5, "好"),
        CARDS,
    ),
    "RateAppraisal": (
        lambda w, c: w.app.rate_appraisal(c, w.member, 2025, AppraisalRating.EXCELLENT),
        MEMBERS,
    ),
    "FormPairing": (
        lambda w, c: w.app.form_pairing(c, w.unpaired_organ, w.community_committee),
        PAIRINGS,
    ),
    "EndPairing": (lambda w, c: w.app.end_pairing(c, w.pairing, "到期"), PAIRINGS),
}


QUERIES: dict[str, Callable[[dict[str, str]], Any]] = {
    "GetAdminUnit": lambda ids: pb.GetAdminUnitRequest(code="QH-01-01"),
    "ListAdminUnits": lambda ids: pb.ListAdminUnitsRequest(parent_code="QH"),
    "ResolveGrid": lambda ids: pb.ResolveGridRequest(
        community_code="QH-01-01", grid_code="QH-01-01-G01"
    ),
    "GetPartyOrg": lambda ids: pb.GetPartyOrgRequest(org_id=ids["grid"]),
    "WalkOrgTree": lambda ids: pb.WalkOrgTreeRequest(root_id=ids["street"]),
    "GetMember": lambda ids: pb.GetMemberRequest(member_id=ids["member"]),
    "ListPairings": lambda ids: pb.ListPairingsRequest(org_id=ids["organ"]),
}
"""Each query with a request that finds something: any signed-in caller may read."""

ROWS = {name: allowed for name, (_, allowed) in COMMANDS.items()} | {
    name: ANY_SIGNED_IN for name in QUERIES
}

SPLIT_SCOPE: dict[str, tuple[Command, tuple[str, ...]]] = {
    # the member's organization (QH-01-01-G01) and the community reported to
    "ReportToCommunity, over the target community only": (
        lambda w, c: w.app.report_to_community(c, w.member, "QH-02-01"),
        ("QH-02-01",),
    ),
    "ReportToCommunity, over the member's organization only": (
        lambda w, c: w.app.report_to_community(c, w.member, "QH-02-01"),
        ("QH-01-01-G01",),
    ),
    # the new org's unit and its parent's unit (the parent's children change)
    "FoundPartyOrg, over the unit only": (
        lambda w, c: w.app.found_org(c, OrgKind.BRANCH, "社区支部", w.organ, "QH-01-01"),
        ("QH-01-01",),
    ),
    "FoundPartyOrg, over the parent's unit only": (
        lambda w, c: w.app.found_org(c, OrgKind.BRANCH, "双塘支部", w.organ, "QH-02"),
        ("QH-01",),
    ),
    # the org's unit, the new parent's and the previous parent's
    "MovePartyOrg, over the org only": (
        lambda w, c: w.app.move_org(c, w.empty, w.other_committee),
        ("QH-01",),
    ),
    "MovePartyOrg, over the new parent only": (
        lambda w, c: w.app.move_org(c, w.empty, w.other_committee),
        ("QH-02-01",),
    ),
    "MovePartyOrg, over the org and the new parent, not the previous parent": (
        lambda w, c: w.app.move_org(c, w.straddling, w.community_committee),
        ("QH-01-01",),
    ),
    # the org's unit and its parent's (which lets it go)
    "DissolvePartyOrg, over the org only": (
        lambda w, c: w.app.dissolve_org(c, w.straddling, "合并"),
        ("QH-01-01",),
    ),
    # a transfer: the sending org starts it, the receiving org receives it
    "StartMemberTransfer, over the receiving org only": (
        lambda w, c: w.app.start_transfer(c, w.member, w.other_organ),
        ("QH-02",),
    ),
    "ReceiveMemberTransfer, over the sending org only": (
        lambda w, c: w.app.receive_transfer(c, w.transferring),
        ("QH-01-01-G01",),
    ),
    # a pairing: the organ's org and the community's
    "FormPairing, over the community only": (
        lambda w, c: w.app.form_pairing(c, w.other_organ, w.community_committee),
        ("QH-01-01",),
    ),
    "FormPairing, over the organ only": (
        lambda w, c: w.app.form_pairing(c, w.other_organ, w.community_committee),
        ("QH-02",),
    ),
    "EndPairing, over the community only": (
        lambda w, c: w.app.end_pairing(c, w.pairing, "到期"),
        ("QH-01-01",),
    ),
}
"""Commands that touch several units, by a caller whose scope covers one but not another."""


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> World:
    built = await build_world(tmp_path, clock)
    yield built
    await built.store.close()


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("command", sorted(COMMANDS))
async def test_each_command_admits_exactly_its_roles(
    world: World, command: str, role: Role
) -> None:
    run, allowed = COMMANDS[command]
    await admits_exactly(
        lambda p: run(world, Caller(p, "test")), allowed, role, world.store.head_position
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
async def test_each_command_refuses_a_caller_from_another_street(
    world: World, command: str
) -> None:
    run, allowed = COMMANDS[command]
    await refuses_another_street(
        lambda p: run(world, Caller(p, "test")), allowed, world.store.head_position
    )


def test_the_table_has_a_row_for_every_rpc_of_the_service() -> None:
    rows_cover_the_service(ROWS, pb.DESCRIPTOR.services_by_name["PartyOrgsService"])


@pytest.mark.parametrize("case", sorted(SPLIT_SCOPE))
async def test_a_command_touching_several_units_needs_scope_over_each(
    world: World, case: str
) -> None:
    run, scope = SPLIT_SCOPE[case]
    command = case.split(",")[0]
    allowed = COMMANDS[command][1]
    await refuses_scope(
        lambda p: run(world, Caller(p, "test")), allowed, scope, world.store.head_position
    )


async def test_a_caller_over_every_unit_a_command_touches_is_admitted(world: World) -> None:
    both = Caller(Principal("tester", frozenset({Role.STREET_STAFF}), ("QH-01", "QH-02")))
    before = await world.store.head_position()

    await world.app.report_to_community(both, world.member, "QH-02-01")
    await world.app.form_pairing(both, world.other_organ, world.community_committee)
    await world.app.move_org(both, world.straddling, world.community_committee)

    assert await world.store.head_position() > before


async def test_card_activity_ids_of_the_volunteers_service_are_kept_for_it(world: World) -> None:
    derived = "volunteer-6f1c1d8e-0000-4000-8000-000000000001-6f1c1d8e-0000-4000-8000-0000000002"
    admin = Caller(Principal("admin", frozenset({Role.DISTRICT_ADMIN}), ("QH",)))
    service = Caller(Principal("volunteers", frozenset({Role.SERVICE}), ("QH",)))
    before = await world.store.head_position()

    with pytest.raises(NotAllowed, match="kept for the volunteers service"):
        await world.app.record_activity(
            admin, world.member, derived, CardActivityKind.MEETING, "抢先", 240, WHEN
        )
    refused_at = await world.store.head_position()
    await world.app.record_activity(
        service, world.member, derived, CardActivityKind.VOLUNTEER_SERVICE, "志愿服务", 25, WHEN
    )

    assert refused_at == before
    card = await world.app.members.get(world.member)
    assert card.activities[derived].tenths_of_hours == 25


@pytest.mark.parametrize("query", sorted(QUERIES))
async def test_every_signed_in_role_may_call_each_query(
    tmp_path: Path, clock: ManualClock, query: str
) -> None:
    async with platform(tmp_path, clock) as running:
        for role in sorted(ROWS[query]):
            call = getattr(running.party_orgs, query)
            try:
                await call(QUERIES[query](running.ids), metadata=running.token(role))
            except grpc.aio.AioRpcError as refused:
                pytest.fail(f"{role} may not call {query}: {refused.code()} {refused.details()}")


async def test_the_volunteers_service_token_records_on_a_card_through_grpc(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with platform(tmp_path, clock) as running:
        request = pb.RecordCardActivityRequest(
            member_id=running.ids["member"],
            activity=pb.CardActivity(
                activity_id="volunteer-a-v",
                kind=pb.CARD_ACTIVITY_KIND_VOLUNTEER_SERVICE,
                description="志愿服务：银发餐桌",
                tenths_of_hours=20,
                occurred_at={"seconds": int(WHEN.timestamp())},
            ),
        )
        token = running.authority.mint("volunteers", [Role.SERVICE], ["QH"])
        reply = await running.party_orgs.RecordCardActivity(
            request, metadata=[("authorization", f"Bearer {token}")]
        )

    assert [a.activity_id for a in reply.member.activities] == ["volunteer-a-v"]


def test_auditors_may_run_no_command() -> None:
    assert all(Role.AUDITOR not in allowed for _, allowed in COMMANDS.values())
