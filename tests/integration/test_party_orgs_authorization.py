"""Every party_orgs command against every role, and out of scope (table-driven)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from civitas.chassis.auth import Caller, Role
from civitas.eventkit import ManualClock
from civitas.party_orgs.domain.members import AppraisalRating, CardActivityKind
from civitas.party_orgs.domain.orgs import OrgKind, SeatRole
from civitas.party_orgs.v1 import party_orgs_pb2 as pb
from tests.support.authorization import admits_exactly, refuses_another_street
from tests.support.party_orgs import World, build_world

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


def test_the_table_covers_every_command_of_the_service() -> None:
    methods = set(pb.DESCRIPTOR.services_by_name["PartyOrgsService"].methods_by_name)
    queries = {m for m in methods if m.startswith(("Get", "List"))} | {
        "ResolveGrid",
        "WalkOrgTree",
    }
    assert set(COMMANDS) == methods - queries


def test_auditors_may_run_no_command() -> None:
    assert all(Role.AUDITOR not in allowed for _, allowed in COMMANDS.values())
