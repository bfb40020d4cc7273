"""volunteers over real gRPC with party_orgs as a real server; process managers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from civitas.chassis.auth import Role
from civitas.eventkit import ManualClock
from civitas.party_orgs.v1 import party_orgs_pb2 as po
from civitas.volunteers.domain.volunteers import volunteer_id_for_member
from civitas.volunteers.v1 import volunteers_pb2 as pb
from tests.support.processes import (
    consumed,
    eventually,
    forget_progress,
    handled_all,
    publish_again,
)
from tests.support.volunteers_platform import (
    World,
    attended_activity,
    platform,
    profile_events,
    report,
    stamp,
)

C = grpc.StatusCode


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    async with platform(tmp_path, clock) as built:
        yield built


async def test_a_member_reporting_to_a_community_gets_one_volunteer_profile(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with platform(tmp_path, clock) as world:
        member = await report(world)

        async def profiled() -> bool:
            return await profile_events(world, member) == ["VolunteerRegistered"]

        await eventually(profiled, "the volunteer profile")
        forget_progress(world.volunteers.processes[0])
        await world.volunteers.processes[0].catch_up()  # every event delivered again
        got = await world.stub.GetVolunteer(
            pb.GetVolunteerRequest(volunteer_id=volunteer_id_for_member(member)),
            metadata=world.token(Role.AUDITOR),
        )
        after_redelivery = await profile_events(world, member)
    async with platform(tmp_path, clock, seeded=False) as restarted:
        await handled_all(restarted.volunteers.processes[0], restarted.party.store)
        after_restart = await profile_events(restarted, member)

    assert got.volunteer.name == "李明"  # the member's name, sealed with the member's key
    assert (got.volunteer.member_id, got.volunteer.community_code) == (member, "QH-01-01")
    assert after_redelivery == ["VolunteerRegistered"]
    assert after_restart == ["VolunteerRegistered"]


async def test_a_members_verified_hours_reach_the_card_once(world: World) -> None:
    member = await report(world)
    volunteer_id = volunteer_id_for_member(member)

    async def profiled() -> bool:
        return bool(await profile_events(world, member))

    await eventually(profiled, "the volunteer profile")
    activity_id = await attended_activity(world, volunteer_id)

    async def on_card() -> bool:
        card = await world.party_orgs.GetMember(
            po.GetMemberRequest(member_id=member), metadata=world.token(Role.AUDITOR)
        )
        return len(card.member.activities) == 1

    await eventually(on_card, "the hours on the member's card")
    forget_progress(world.volunteers.processes[1])
    await world.volunteers.processes[1].catch_up()
    card = await world.party_orgs.GetMember(
        po.GetMemberRequest(member_id=member), metadata=world.token(Role.AUDITOR)
    )
    volunteer = await world.stub.GetVolunteer(
        pb.GetVolunteerRequest(volunteer_id=volunteer_id), metadata=world.token(Role.AUDITOR)
    )

    assert [(a.tenths_of_hours, a.kind) for a in card.member.activities] == [
        (25, po.CARD_ACTIVITY_KIND_VOLUNTEER_SERVICE)
    ]
    assert dict(volunteer.volunteer.tenths_by_activity) == {activity_id: 25}


async def test_certificates_are_numbered_and_state_the_verified_total(world: World) -> None:
    staff = world.token(Role.VOLUNTEER_COORDINATOR, scope=("QH-01-01",))
    volunteer = (
        await world.stub.RegisterVolunteer(
            pb.RegisterVolunteerRequest(
                name="陈静", phone="139 1234 5678", community_code="QH-01-01", skills=["法律"]
            ),
            metadata=staff,
        )
    ).volunteer
    await attended_activity(world, volunteer.volunteer_id)

    first = await world.stub.IssueCertificate(
        pb.IssueCertificateRequest(volunteer_id=volunteer.volunteer_id), metadata=staff
    )

    year = world.clock.now().year
    assert (first.certificate.number, first.certificate.total_tenths_of_hours) == (
        f"QH-VOL-{year}-000001",
        25,
    )
    assert first.volunteer.name == "陈静"


def bad_requests(
    world: World, activity_id: str, volunteer_id: str
) -> list[tuple[str, object, C, str]]:
    unknown = "00000000-0000-4000-8000-000000000000"
    start = world.clock.now() + timedelta(days=1)
    ids = {"activity_id": activity_id, "volunteer_id": volunteer_id}
    return [
        (
            "RegisterVolunteer",
            pb.RegisterVolunteerRequest(name="x", phone="no", community_code="QH-01-01"),
            C.INVALID_ARGUMENT,
            "not a phone number",
        ),
        (
            "RegisterVolunteer",
            pb.RegisterVolunteerRequest(
                name="x", phone="13900000000", community_code="QH-01-01", member_id=unknown
            ),
            C.FAILED_PRECONDITION,
            "no member",
        ),
        (
            "SuspendVolunteer",
            pb.SuspendVolunteerRequest(volunteer_id=unknown, reason="x"),
            C.NOT_FOUND,
            "does not exist",
        ),
        (
            "ReinstateVolunteer",
            pb.ReinstateVolunteerRequest(volunteer_id=volunteer_id),
            C.FAILED_PRECONDITION,
            "not suspended",
        ),
        (
            "CreateActivity",
            pb.CreateActivityRequest(
                brand=pb.BRAND_LEGAL_AID,
                title="t",
                organizer="o",
                community_code="QH-01-01",
                starts_at=stamp(start),
                ends_at=stamp(start),
                capacity=5,
            ),
            C.INVALID_ARGUMENT,
            "ends after it starts",
        ),
        (
            "CreateActivity",
            pb.CreateActivityRequest(title="t"),
            C.INVALID_ARGUMENT,
            "starts_at is required",
        ),
        ("SignUp", pb.SignUpRequest(**ids), C.FAILED_PRECONDITION, "signed up already"),
        (
            "CancelSignUp",
            pb.CancelSignUpRequest(activity_id=activity_id, volunteer_id=unknown),
            C.FAILED_PRECONDITION,
            "not signed up",
        ),
        ("CheckIn", pb.CheckInRequest(**ids), C.FAILED_PRECONDITION, "an hour before"),
        ("CheckOut", pb.CheckOutRequest(**ids), C.FAILED_PRECONDITION, "not checked in"),
        (
            "VerifyHours",
            pb.VerifyHoursRequest(**ids, tenths_of_hours=10),
            C.FAILED_PRECONDITION,
            "after the volunteer checks out",
        ),
        (
            "DeclineHours",
            pb.DeclineHoursRequest(activity_id="x", volunteer_id=volunteer_id),
            C.INVALID_ARGUMENT,
            "activity_id",
        ),
        (
            "IssueCertificate",
            pb.IssueCertificateRequest(volunteer_id=volunteer_id),
            C.FAILED_PRECONDITION,
            "no verified hours",
        ),
        (
            "ImportActivity",
            pb.ImportActivityRequest(activity=pb.CreateActivityRequest(title="t")),
            C.INVALID_ARGUMENT,
            "activity.starts_at is required",
        ),
        (
            "GetVolunteer",
            pb.GetVolunteerRequest(volunteer_id=""),
            C.INVALID_ARGUMENT,
            "volunteer_id is required",
        ),
        ("GetActivity", pb.GetActivityRequest(activity_id=unknown), C.NOT_FOUND, "does not exist"),
    ]


async def test_bad_input_gets_its_code_and_a_clear_message_and_stores_nothing(
    world: World,
) -> None:
    staff = world.token(Role.VOLUNTEER_COORDINATOR, scope=("QH-01-01",))
    volunteer = (
        await world.stub.RegisterVolunteer(
            pb.RegisterVolunteerRequest(
                name="陈静", phone="13912345678", community_code="QH-01-01"
            ),
            metadata=staff,
        )
    ).volunteer
    start = world.clock.now() + timedelta(days=1)
    activity = (
        await world.stub.CreateActivity(
            pb.CreateActivityRequest(
                brand=pb.BRAND_AFTER_SCHOOL,
                title="放学来吧",
                organizer="o",
                community_code="QH-01-01",
                starts_at=stamp(start),
                ends_at=stamp(start + timedelta(hours=2)),
                capacity=5,
            ),
            metadata=staff,
        )
    ).activity
    await world.stub.SignUp(
        pb.SignUpRequest(activity_id=activity.activity_id, volunteer_id=volunteer.volunteer_id),
        metadata=staff,
    )
    cases = bad_requests(world, activity.activity_id, volunteer.volunteer_id)
    every_rpc = set(pb.DESCRIPTOR.services_by_name["VolunteersService"].methods_by_name)
    assert {rpc for rpc, *_ in cases} == every_rpc

    for rpc, request, code, words in cases:
        before = await world.volunteers.store.head_position()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(world.stub, rpc)(request, metadata=staff)
        assert (rpc, caught.value.code()) == (rpc, code), caught.value.details()
        assert words in caught.value.details(), (rpc, caught.value.details())
        assert await world.volunteers.store.head_position() == before, rpc


@pytest.mark.kafka
async def test_on_kafka_duplicates_and_restarts_still_make_one_profile_and_one_card_entry(
    tmp_path: Path, clock: ManualClock, kafka_bootstrap: str
) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    extra = {"CIVITAS_KAFKA_BOOTSTRAP": kafka_bootstrap, "CIVITAS_KAFKA_NAMESPACE": namespace}
    async with platform(tmp_path, clock, extra=extra) as world:
        member = await report(world)

        async def profiled() -> bool:
            return bool(await profile_events(world, member))

        await eventually(profiled, "the profile, over Kafka", seconds=60)
        # every party_orgs event published a second time
        await publish_again(world.party.store, "party_orgs", kafka_bootstrap, namespace)
        await attended_activity(world, volunteer_id_for_member(member))

        async def on_card() -> bool:
            card = await world.party_orgs.GetMember(
                po.GetMemberRequest(member_id=member), metadata=world.token(Role.AUDITOR)
            )
            return len(card.member.activities) == 1

        await eventually(on_card, "the hours on the card, over Kafka", seconds=60)
        await consumed(kafka_bootstrap, namespace)  # the duplicates too
    async with platform(tmp_path, clock, seeded=False, extra=extra) as restarted:
        await consumed(kafka_bootstrap, namespace)
        profile = await profile_events(restarted, member)
        card = await restarted.party_orgs.GetMember(
            po.GetMemberRequest(member_id=member), metadata=restarted.token(Role.AUDITOR)
        )

    assert profile == ["VolunteerRegistered", "HoursCredited"]
    assert len(card.member.activities) == 1


async def test_a_past_activity_is_imported_with_its_roster_and_credits_the_ledger(
    world: World,
) -> None:
    member = await report(world)
    member_volunteer = volunteer_id_for_member(member)

    async def profiled() -> bool:
        return bool(await profile_events(world, member))

    await eventually(profiled, "the profile")
    other = (
        await world.stub.RegisterVolunteer(
            pb.RegisterVolunteerRequest(
                name="吴娟", phone="13700000000", community_code="QH-01-01"
            ),
            metadata=world.token(Role.VOLUNTEER_COORDINATOR),
        )
    ).volunteer.volunteer_id
    start = world.clock.now() - timedelta(days=30)
    spec = pb.CreateActivityRequest(
        brand=pb.BRAND_LEGAL_AID,
        title="春风驿站·法律咨询",
        organizer="司法所",
        community_code="QH-01-01",
        starts_at=stamp(start),
        ends_at=stamp(start + timedelta(hours=3)),
        capacity=5,
    )
    attendance = [
        pb.AttendanceRecord(
            volunteer_id=member_volunteer,
            checked_in_at=stamp(start),
            checked_out_at=stamp(start + timedelta(hours=3)),
            verified_tenths_of_hours=30,
        ),
        pb.AttendanceRecord(
            volunteer_id=other,
            checked_in_at=stamp(start),
            checked_out_at=stamp(start + timedelta(minutes=20)),
            declined_reason="中途离开，未提供服务",
        ),
    ]

    imported = (
        await world.stub.ImportActivity(
            pb.ImportActivityRequest(activity=spec, attendance=attendance),
            metadata=world.token(Role.DISTRICT_ADMIN),
        )
    ).activity

    async def on_card() -> bool:
        card = await world.party_orgs.GetMember(
            po.GetMemberRequest(member_id=member), metadata=world.token(Role.AUDITOR)
        )
        return len(card.member.activities) == 1

    await eventually(on_card, "the imported hours on the member's card")
    ledger = await world.stub.GetVolunteer(
        pb.GetVolunteerRequest(volunteer_id=member_volunteer), metadata=world.token(Role.AUDITOR)
    )
    assert {
        e.volunteer_id: (e.verified_tenths_of_hours, e.declined_reason) for e in imported.roster
    } == {member_volunteer: (30, ""), other: (0, "中途离开，未提供服务")}
    assert ledger.volunteer.total_tenths_of_hours == 30
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await world.stub.ImportActivity(
            pb.ImportActivityRequest(activity=spec),
            metadata=world.token(Role.VOLUNTEER_COORDINATOR),
        )
    assert refused.value.code() is C.PERMISSION_DENIED


async def test_a_member_cannot_be_registered_as_a_volunteer_elsewhere_to_read_their_name(
    world: World,
) -> None:
    stranger = world.token(Role.VOLUNTEER_COORDINATOR, scope=("QH-02-01",))
    before = await world.volunteers.store.head_position()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.stub.RegisterVolunteer(
            pb.RegisterVolunteerRequest(
                member_id=world.ids["member"], community_code="QH-02-01", phone="13900000001"
            ),
            metadata=stranger,
        )

    assert caught.value.code() is C.FAILED_PRECONDITION
    assert "residence community" in caught.value.details()
    assert "李明" not in caught.value.details()
    assert await world.volunteers.store.head_position() == before


async def test_a_verification_retry_completes_the_ledger_credit_with_the_verified_hours(
    world: World,
) -> None:

    staff = world.token(Role.VOLUNTEER_COORDINATOR, scope=("QH-01-01",))
    volunteer = (
        await world.stub.RegisterVolunteer(
            pb.RegisterVolunteerRequest(
                name="陈静", phone="13912345678", community_code="QH-01-01"
            ),
            metadata=staff,
        )
    ).volunteer
    start = world.clock.now() + timedelta(hours=1)
    activity = (
        await world.stub.CreateActivity(
            pb.CreateActivityRequest(
                brand=pb.BRAND_HOME_CARE,
                title="居家无忧",
                organizer="o",
                community_code="QH-01-01",
                starts_at=stamp(start),
                ends_at=stamp(start + timedelta(hours=3)),
                capacity=5,
            ),
            metadata=staff,
        )
    ).activity
    ids = {"activity_id": activity.activity_id, "volunteer_id": volunteer.volunteer_id}
    await world.stub.SignUp(pb.SignUpRequest(**ids), metadata=staff)
    world.clock.advance(timedelta(hours=1))
    await world.stub.CheckIn(pb.CheckInRequest(**ids), metadata=staff)
    world.clock.advance(timedelta(hours=2))
    await world.stub.CheckOut(pb.CheckOutRequest(**ids), metadata=staff)
    app = world.volunteers.app  # the crash: the activity is verified, the ledger not credited
    await app.activities.update(
        activity.activity_id, lambda a: a.verify_hours(volunteer.volunteer_id, None, 20, "组织者")
    )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await world.stub.VerifyHours(
            pb.VerifyHoursRequest(**ids, tenths_of_hours=15), metadata=staff
        )
    ledger = await app.get_volunteer(volunteer.volunteer_id)

    assert refused.value.code() is C.FAILED_PRECONDITION
    assert "verified as 2.0 h already" in refused.value.details()
    assert ledger.hours == {activity.activity_id: 20}
