"""Every volunteers RPC against every role, out of scope, and with scope over the
volunteer's community but not the activity's (table-driven)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from civitas.chassis.auth import Caller, Principal, Role
from civitas.eventkit import ManualClock
from civitas.volunteers.application import PastAttendance, Volunteers
from civitas.volunteers.domain.activities import Brand
from civitas.volunteers.v1 import volunteers_pb2 as pb
from tests.support.authorization import (
    ANY_SIGNED_IN,
    admits_exactly,
    refuses_another_street,
    refuses_scope,
    rows_cover_the_service,
)
from tests.support.volunteers_platform import platform

R = Role
COORDINATORS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF, R.VOLUNTEER_COORDINATOR}
ATTENDANCE = COORDINATORS | {R.GRID_WORKER}
IMPORTERS = {R.DISTRICT_ADMIN}
COMMUNITY = "QH-01-01"
ELSEWHERE = "QH-02-01"
PAST = datetime(2026, 2, 1, 9, tzinfo=UTC)


def caller(*roles: Role, scope: tuple[str, ...] = ("QH",)) -> Caller:
    return Caller(Principal("tester", frozenset(roles), scope))


ADMIN = caller(R.DISTRICT_ADMIN)


@dataclass
class World:
    """A community's volunteers at every step of an activity under way."""

    app: Volunteers
    activity: str
    new: str  # registered, not signed up
    signed_up: str
    checked_in: str
    checked_out: str  # twice: one to verify, one to decline
    checked_out_too: str
    with_hours: str  # hours verified, no certificate yet
    suspended: str
    visitor: str  # a volunteer of QH-02-01, signed up and checked out in QH-01-01's activity

    async def head(self) -> int:
        return await self.app.store.head_position()


async def build(app: Volunteers, clock: ManualClock) -> World:
    async def volunteer(n: int) -> str:
        made = await app.register(ADMIN, f"志愿者{n}", f"1390000{n:04d}", COMMUNITY, [], None)
        return made.id

    people = [await volunteer(n) for n in range(8)]
    start = clock.now() - timedelta(minutes=30)
    activity = await app.create_activity(
        ADMIN,
        Brand.ELDERLY_DINING,
        "午餐送餐",
        "社区",
        COMMUNITY,
        start,
        start + timedelta(hours=6),
        20,
        [],
    )
    new, signed_up, checked_in, out, out_too, with_hours, suspended, _ = people
    visitor = (await app.register(ADMIN, "来访者", "13900009999", ELSEWHERE, [], None)).id
    for person in (signed_up, checked_in, out, out_too, with_hours, visitor):
        await app.sign_up(ADMIN, activity.id, person)
    for person in (checked_in, out, out_too, with_hours, visitor):
        await app.check_in(ADMIN, activity.id, person)
    clock.advance(timedelta(hours=2))
    for person in (out, out_too, with_hours, visitor):
        await app.check_out(ADMIN, activity.id, person)
    await app.verify_hours(ADMIN, activity.id, with_hours, 10)
    await app.suspend(ADMIN, suspended, "暂停")
    return World(
        app, activity.id, new, signed_up, checked_in, out, out_too, with_hours, suspended, visitor
    )


Command = Callable[[World, Caller], Awaitable[Any]]
COMMANDS: dict[str, tuple[Command, set[Role]]] = {
    "RegisterVolunteer": (
        lambda w, c: w.app.register(c, "新志愿者", "13911112222", COMMUNITY, ["烹饪"], None),
        COORDINATORS,
    ),
    "SuspendVolunteer": (lambda w, c: w.app.suspend(c, w.new, "请假"), COORDINATORS),
    "ReinstateVolunteer": (lambda w, c: w.app.reinstate(c, w.suspended), COORDINATORS),
    "CreateActivity": (
        lambda w, c: w.app.create_activity(
            c,
            Brand.LEGAL_AID,
            "法律咨询",
            "社区",
            COMMUNITY,
            PAST + timedelta(days=60),
            PAST + timedelta(days=60, hours=2),
            5,
            [],
        ),
        COORDINATORS,
    ),
    "SignUp": (lambda w, c: w.app.sign_up(c, w.activity, w.new), ATTENDANCE),
    "CancelSignUp": (lambda w, c: w.app.cancel(c, w.activity, w.signed_up), ATTENDANCE),
    "CheckIn": (lambda w, c: w.app.check_in(c, w.activity, w.signed_up), ATTENDANCE),
    "CheckOut": (lambda w, c: w.app.check_out(c, w.activity, w.checked_in), ATTENDANCE),
    "VerifyHours": (
        lambda w, c: w.app.verify_hours(c, w.activity, w.checked_out, 15),
        COORDINATORS,
    ),
    "DeclineHours": (
        lambda w, c: w.app.decline_hours(c, w.activity, w.checked_out_too, "未到岗"),
        COORDINATORS,
    ),
    "IssueCertificate": (lambda w, c: w.app.issue_certificate(c, w.with_hours), COORDINATORS),
    "ImportActivity": (
        lambda w, c: w.app.import_activity(
            c,
            Brand.HOME_CARE,
            "上门照护",
            "社区",
            COMMUNITY,
            PAST,
            PAST + timedelta(hours=2),
            5,
            [],
            [PastAttendance(w.new, PAST, PAST + timedelta(hours=2), 20)],
            source_id="old-1",
        ),
        IMPORTERS,
    ),
}


QUERIES = {"GetVolunteer", "GetActivity"}
ROWS = {name: allowed for name, (_, allowed) in COMMANDS.items()} | {
    name: ANY_SIGNED_IN for name in QUERIES
}

ACTIVITY_DECIDES: dict[str, tuple[Command, set[Role]]] = {
    "CancelSignUp": (lambda w, c: w.app.cancel(c, w.activity, w.visitor), ATTENDANCE),
    "VerifyHours": (lambda w, c: w.app.verify_hours(c, w.activity, w.visitor, 15), COORDINATORS),
    "DeclineHours": (
        lambda w, c: w.app.decline_hours(c, w.activity, w.visitor, "未到岗"),
        COORDINATORS,
    ),
}
"""Commands on a visiting volunteer's attendance: the activity's community decides them,
and the visitor's own community may not (VerifyHours then credits the visitor's ledger,
by the rule that it holds what the activity verified)."""


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    async with platform(tmp_path, clock, seeded=False) as running:
        yield await build(running.volunteers.app, clock)


def test_the_table_has_a_row_for_every_rpc_of_the_service() -> None:
    rows_cover_the_service(ROWS, pb.DESCRIPTOR.services_by_name["VolunteersService"])


@pytest.mark.parametrize("command", sorted(ACTIVITY_DECIDES))
async def test_the_visiting_volunteers_community_does_not_decide_the_attendance(
    world: World, command: str
) -> None:
    run, allowed = ACTIVITY_DECIDES[command]
    await refuses_scope(lambda p: run(world, Caller(p)), allowed, (ELSEWHERE,), world.head)


async def test_every_signed_in_role_may_call_each_query(tmp_path: Path, clock: ManualClock) -> None:
    async with platform(tmp_path, clock, seeded=False) as running:
        built = await build(running.volunteers.app, clock)
        requests = {
            "GetVolunteer": pb.GetVolunteerRequest(volunteer_id=built.new),
            "GetActivity": pb.GetActivityRequest(activity_id=built.activity),
        }
        assert set(requests) == QUERIES
        for query, request in sorted(requests.items()):
            for role in sorted(ROWS[query]):
                try:
                    await getattr(running.stub, query)(request, metadata=running.token(role))
                except grpc.aio.AioRpcError as refused:
                    pytest.fail(f"{role} may not call {query}: {refused.details()}")


def test_auditors_may_run_no_command() -> None:
    assert all(R.AUDITOR not in allowed for _, allowed in COMMANDS.values())


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("command", sorted(COMMANDS))
async def test_each_command_admits_exactly_its_roles(
    world: World, command: str, role: Role
) -> None:
    run, allowed = COMMANDS[command]
    await admits_exactly(lambda p: run(world, Caller(p)), allowed, role, world.head)


@pytest.mark.parametrize("command", sorted(COMMANDS))
async def test_each_command_refuses_a_caller_from_another_street(
    world: World, command: str
) -> None:
    run, allowed = COMMANDS[command]
    await refuses_another_street(lambda p: run(world, Caller(p)), allowed, world.head)
