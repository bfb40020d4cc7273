"""Keys callers choose, over real gRPC: request ids of the commands that create a
volunteer or an activity, and the source id of an imported activity. The same key with
the same request returns the first result; with another request it is ALREADY_EXISTS
naming the key, and nothing is stored. A command that made its thing and then lost its
request log entry (a crash in between) finds the thing again under the same id."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from civitas.chassis.auth import Caller, Principal, Role
from civitas.eventkit import ManualClock, natural_id
from civitas.volunteers.application import PastAttendance
from civitas.volunteers.domain.activities import Activity, Brand
from civitas.volunteers.v1 import volunteers_pb2 as pb
from tests.support.volunteers_platform import World, platform, stamp

C = grpc.StatusCode
PAST = datetime(2026, 2, 1, 9, tzinfo=UTC)
COORDINATOR = Caller(Principal("staff", frozenset({Role.VOLUNTEER_COORDINATOR}), ("QH-01-01",)))


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    async with platform(tmp_path, clock, seeded=False) as running:
        yield running


def activity(title: str = "法律咨询", request_id: str = "") -> pb.CreateActivityRequest:
    start = PAST + timedelta(days=60)
    return pb.CreateActivityRequest(
        brand=pb.BRAND_LEGAL_AID,
        title=title,
        organizer="大光路社区",
        community_code="QH-01-01",
        starts_at=stamp(start),
        ends_at=stamp(start + timedelta(hours=2)),
        capacity=5,
        request_id=request_id,
    )


def volunteer(name: str = "陈静", request_id: str = "") -> pb.RegisterVolunteerRequest:
    return pb.RegisterVolunteerRequest(
        name=name, phone="13912345678", community_code="QH-01-01", request_id=request_id
    )


CREATING: dict[str, Callable[[str], tuple[Any, Any]]] = {
    "CreateActivity": lambda rid: (activity(request_id=rid), activity("调解", rid)),
    "RegisterVolunteer": lambda rid: (volunteer(request_id=rid), volunteer("陈晶", rid)),
}


@pytest.mark.parametrize("rpc", sorted(CREATING))
async def test_a_retried_creation_returns_the_first_result_and_another_under_its_id_is_refused(
    world: World, rpc: str
) -> None:
    staff = world.token(Role.VOLUNTEER_COORDINATOR, scope=("QH-01-01",))
    request_id = str(uuid.uuid4())
    first, other = CREATING[rpc](request_id)
    call: Callable[..., Awaitable[Any]] = getattr(world.stub, rpc)

    reply = await call(first, metadata=staff)
    stored = await world.volunteers.store.head_position()
    again = await call(first, metadata=staff)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(other, metadata=staff)

    assert again == reply
    assert refused.value.code() is C.ALREADY_EXISTS
    assert request_id in refused.value.details()
    assert await world.volunteers.store.head_position() == stored


async def test_an_activity_made_before_a_crash_is_found_again_by_its_request_id(
    world: World,
) -> None:
    staff = world.token(Role.VOLUNTEER_COORDINATOR, scope=("QH-01-01",))
    app = world.volunteers.app
    kept, reused = str(uuid.uuid4()), str(uuid.uuid4())
    made = {}
    for request_id in (kept, reused):  # made, and the request log never heard of it
        made[request_id] = await app.create_activity(
            COORDINATOR,
            Brand.LEGAL_AID,
            "法律咨询",
            "大光路社区",
            "QH-01-01",
            PAST + timedelta(days=60),
            PAST + timedelta(days=60, hours=2),
            5,
            [],
            request_id=request_id,
        )
    stored = await world.volunteers.store.head_position()

    retried = await world.stub.CreateActivity(activity(request_id=kept), metadata=staff)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await world.stub.CreateActivity(activity("调解", reused), metadata=staff)

    assert retried.activity.activity_id == made[kept].id
    assert (refused.value.code(), reused in refused.value.details()) == (C.ALREADY_EXISTS, True)
    assert await world.volunteers.store.head_position() == stored


async def test_a_volunteer_registered_before_a_crash_is_found_again_by_its_request_id(
    world: World,
) -> None:
    staff = world.token(Role.VOLUNTEER_COORDINATOR, scope=("QH-01-01",))
    app = world.volunteers.app
    kept, reused = str(uuid.uuid4()), str(uuid.uuid4())
    made = {}
    for request_id in (kept, reused):
        made[request_id] = await app.register(
            COORDINATOR, "陈静", "13912345678", "QH-01-01", [], None, request_id=request_id
        )
    stored = await world.volunteers.store.head_position()

    retried = await world.stub.RegisterVolunteer(volunteer(request_id=kept), metadata=staff)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await world.stub.RegisterVolunteer(volunteer("陈晶", reused), metadata=staff)

    assert retried.volunteer.volunteer_id == made[kept].id
    assert (retried.volunteer.name, refused.value.code()) == ("陈静", C.ALREADY_EXISTS)
    assert await world.volunteers.store.head_position() == stored


async def registered(world: World, *names: str) -> list[str]:
    admin = world.token(Role.DISTRICT_ADMIN)
    replies = [
        await world.stub.RegisterVolunteer(
            pb.RegisterVolunteerRequest(
                name=name, phone=f"1390000{n:04d}", community_code="QH-01-01"
            ),
            metadata=admin,
        )
        for n, name in enumerate(names)
    ]
    return [r.volunteer.volunteer_id for r in replies]


def imported(
    volunteers: list[str], *, title: str = "上门照护", hours: int = 20, source_id: str = "old-7"
) -> pb.ImportActivityRequest:
    spec = pb.CreateActivityRequest(
        brand=pb.BRAND_HOME_CARE,
        title=title,
        organizer="大光路社区",
        community_code="QH-01-01",
        starts_at=stamp(PAST),
        ends_at=stamp(PAST + timedelta(hours=2)),
        capacity=5,
    )
    roster = [
        pb.AttendanceRecord(
            volunteer_id=v,
            checked_in_at=stamp(PAST),
            checked_out_at=stamp(PAST + timedelta(hours=2)),
            verified_tenths_of_hours=hours,
        )
        for v in volunteers
    ]
    return pb.ImportActivityRequest(activity=spec, attendance=roster, source_id=source_id)


async def test_a_source_id_names_one_imported_record(world: World) -> None:
    admin = world.token(Role.DISTRICT_ADMIN)
    crew = await registered(world, "王芳", "李强")
    first = await world.stub.ImportActivity(imported(crew), metadata=admin)
    stored = await world.volunteers.store.head_position()

    again = await world.stub.ImportActivity(imported(crew), metadata=admin)
    refusals = []
    for other in (
        imported(crew, title="居家无忧"),
        imported(crew, hours=15),
        imported(crew[:1]),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await world.stub.ImportActivity(other, metadata=admin)
        refusals.append((refused.value.code(), "old-7" in refused.value.details()))

    assert again == first
    assert refusals == [(C.ALREADY_EXISTS, True)] * 3
    assert await world.volunteers.store.head_position() == stored


async def test_an_import_stopped_before_the_credits_is_completed_by_its_retry(
    world: World,
) -> None:
    admin = world.token(Role.DISTRICT_ADMIN)
    app = world.volunteers.app
    (person,) = await registered(world, "王芳")
    two_hours = PAST + timedelta(hours=2)
    stored = Activity.create(
        str(natural_id("imported-activity", "old-8")),
        Brand.HOME_CARE,
        "上门照护",
        "大光路社区",
        "QH-01-01",
        PAST,
        two_hours,
        5,
        [],
    )
    attended = PastAttendance(person, PAST, two_hours, 20)
    attended.replay_onto(stored, await app.volunteers.get(person), "admin")
    await app.activities.save(stored)  # the crash: the activity is stored, its credit is not

    retried = await world.stub.ImportActivity(imported([person], source_id="old-8"), metadata=admin)

    assert retried.activity.activity_id == stored.id
    assert (await app.volunteers.get(person)).hours == {stored.id: 20}
