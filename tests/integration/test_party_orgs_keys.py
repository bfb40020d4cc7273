"""Keys callers choose, over real gRPC: request ids of the commands that create
something, and the ids of card activities and residents' feedback. The same key with
the same request returns the first result; with another request it is ALREADY_EXISTS
naming the key, and nothing is stored."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from civitas.chassis.auth import Role
from civitas.eventkit import ManualClock
from civitas.party_orgs.v1 import party_orgs_pb2 as pb
from tests.support.volunteers_platform import World, platform

C = grpc.StatusCode
WHEN = datetime(2026, 2, 20, 9, tzinfo=UTC)


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    async with platform(tmp_path, clock) as running:
        yield running


Twins = Callable[[World, str], tuple[Any, Any]]
"""A command's request under a request id, and another request under the same id."""

CREATING: dict[str, Twins] = {
    "RegisterAdminUnit": lambda w, rid: (
        pb.RegisterAdminUnitRequest(code="QH-02", name="双塘街道", request_id=rid),
        pb.RegisterAdminUnitRequest(code="QH-03", name="红花街道", request_id=rid),
    ),
    "FoundPartyOrg": lambda w, rid: (
        pb.FoundPartyOrgRequest(
            kind=pb.PARTY_ORG_KIND_BRANCH,
            name="财政局第二支部",
            parent_id=w.ids["organ"],
            unit_code="QH",
            request_id=rid,
        ),
        pb.FoundPartyOrgRequest(
            kind=pb.PARTY_ORG_KIND_BRANCH,
            name="财政局第三支部",
            parent_id=w.ids["organ"],
            unit_code="QH",
            request_id=rid,
        ),
    ),
    "AdmitMember": lambda w, rid: (
        pb.AdmitMemberRequest(
            member_number="M-77", name="周洁", org_id=w.ids["grid"], request_id=rid
        ),
        pb.AdmitMemberRequest(
            member_number="M-78", name="周洁", org_id=w.ids["grid"], request_id=rid
        ),
    ),
}


@pytest.mark.parametrize("rpc", sorted(CREATING))
async def test_a_retried_creation_returns_the_first_result_and_another_under_its_id_is_refused(
    world: World, rpc: str
) -> None:
    admin = world.token(Role.DISTRICT_ADMIN)
    request_id = str(uuid.uuid4())
    first, other = CREATING[rpc](world, request_id)
    call: Callable[..., Awaitable[Any]] = getattr(world.party_orgs, rpc)

    reply = await call(first, metadata=admin)
    stored = await world.party.store.head_position()
    again = await call(first, metadata=admin)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(other, metadata=admin)

    assert again == reply
    assert refused.value.code() is C.ALREADY_EXISTS
    assert request_id in refused.value.details()
    assert await world.party.store.head_position() == stored


async def test_register_admin_unit_retried_without_a_request_id_says_it_is_registered(
    world: World,
) -> None:
    admin = world.token(Role.DISTRICT_ADMIN)
    request = pb.RegisterAdminUnitRequest(code="QH-02", name="双塘街道")
    await world.party_orgs.RegisterAdminUnit(request, metadata=admin)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await world.party_orgs.RegisterAdminUnit(request, metadata=admin)

    assert refused.value.code() is C.FAILED_PRECONDITION
    assert "registered already" in refused.value.details()


def card_activity(**change: Any) -> pb.CardActivity:
    fields: dict[str, Any] = {
        "activity_id": "meeting-2026-02",
        "kind": pb.CARD_ACTIVITY_KIND_MEETING,
        "description": "组织生活会",
        "tenths_of_hours": 20,
        "occurred_at": {"seconds": int(WHEN.timestamp())},
    } | change
    return pb.CardActivity(**fields)


@pytest.mark.parametrize(
    "change",
    [
        {"kind": pb.CARD_ACTIVITY_KIND_COMMUNITY_SERVICE},
        {"description": "另一次会"},
        {"tenths_of_hours": 30},
        {"occurred_at": {"seconds": int(WHEN.timestamp()) + 60}},
    ],
    ids=["kind", "description", "hours", "time"],
)
async def test_a_card_activity_id_holds_one_activity(world: World, change: dict[str, Any]) -> None:
    secretary = world.token(Role.PARTY_SECRETARY, scope=("QH-01-01",))
    member = world.ids["member"]
    first = await world.party_orgs.RecordCardActivity(
        pb.RecordCardActivityRequest(member_id=member, activity=card_activity()),
        metadata=secretary,
    )
    stored = await world.party.store.head_position()

    again = await world.party_orgs.RecordCardActivity(
        pb.RecordCardActivityRequest(member_id=member, activity=card_activity()),
        metadata=secretary,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await world.party_orgs.RecordCardActivity(
            pb.RecordCardActivityRequest(member_id=member, activity=card_activity(**change)),
            metadata=secretary,
        )

    assert again.member == first.member
    assert refused.value.code() is C.ALREADY_EXISTS
    assert "meeting-2026-02" in refused.value.details()
    assert await world.party.store.head_position() == stored


async def test_a_feedback_id_holds_one_rating_and_comment(world: World) -> None:
    staff = world.token(Role.COMMUNITY_STAFF, scope=("QH-01-01",))
    member = world.ids["member"]

    def feedback(rating: int, comment: str) -> pb.RecordResidentFeedbackRequest:
        return pb.RecordResidentFeedbackRequest(
            member_id=member,
            feedback=pb.ResidentFeedback(feedback_id="form-7", rating=rating, comment=comment),
        )

    first = await world.party_orgs.RecordResidentFeedback(feedback(5, "热心"), metadata=staff)
    stored = await world.party.store.head_position()
    again = await world.party_orgs.RecordResidentFeedback(feedback(5, "热心"), metadata=staff)
    codes = []
    for other in (feedback(1, "热心"), feedback(5, "冷淡")):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await world.party_orgs.RecordResidentFeedback(other, metadata=staff)
        codes.append((refused.value.code(), "form-7" in refused.value.details()))

    assert again.member == first.member
    assert codes == [(C.ALREADY_EXISTS, True)] * 2
    assert await world.party.store.head_position() == stored


async def test_nobody_but_a_service_takes_an_id_the_volunteers_service_derives(
    world: World,
) -> None:
    admin = world.token(Role.DISTRICT_ADMIN)
    before = await world.party.store.head_position()

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await world.party_orgs.RecordCardActivity(
            pb.RecordCardActivityRequest(
                member_id=world.ids["member"],
                activity=card_activity(activity_id=f"volunteer-{uuid.uuid4()}-{uuid.uuid4()}"),
            ),
            metadata=admin,
        )

    assert refused.value.code() is C.PERMISSION_DENIED
    assert "kept for the volunteers service" in refused.value.details()
    assert await world.party.store.head_position() == before
