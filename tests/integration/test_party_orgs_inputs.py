"""party_orgs' and volunteers' identifiers are checked whole at the edge, over real gRPC:
a valid code, id or key made into another string (empty, spaces, a trailing newline,
a NUL, an invisible character, full-width look-alikes, over-long) is INVALID_ARGUMENT
naming the field, nothing is stored, and nothing becomes INTERNAL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from civitas.chassis.auth import Role
from civitas.eventkit import ManualClock
from civitas.party_orgs.v1 import party_orgs_pb2 as po
from civitas.volunteers.v1 import volunteers_pb2 as pb
from tests.support.volunteers_platform import World, platform, stamp


def full_width(value: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in value)


MANGLINGS: dict[str, Callable[[str], str]] = {
    "empty": lambda v: "",
    "leading space": lambda v: " " + v,
    "trailing space": lambda v: v + " ",
    "trailing newline": lambda v: v + "\n",
    "NUL inside": lambda v: v[:2] + "\x00" + v[2:],
    "zero-width space": lambda v: v + "\u200b",
    "full-width": full_width,
    "one full-width digit": lambda v: v[:-1] + full_width(v[-1]),
    "over-long": lambda v: v + "0" * 200,
}
OPTIONAL = {"ListAdminUnits.parent_code", "WalkOrgTree.root_id", "ImportActivity.source_id"}
"""Fields that may be left empty (all roots, all units, an import without a source)."""


@dataclass
class Field:
    """A request with one identifier field left to fill: the service, the RPC, the valid
    value, and how a value makes the request."""

    service: str
    rpc: str
    valid: str
    request: Callable[[World, str], Any]


FIELDS: dict[str, Field] = {
    f.rpc + "." + name: f
    for name, f in [
        (
            "code",
            Field("po", "GetAdminUnit", "QH-01-01", lambda w, v: po.GetAdminUnitRequest(code=v)),
        ),
        (
            "parent_code",
            Field(
                "po",
                "ListAdminUnits",
                "QH-01",
                lambda w, v: po.ListAdminUnitsRequest(parent_code=v),
            ),
        ),
        (
            "community_code",
            Field(
                "po",
                "ResolveGrid",
                "QH-01-01",
                lambda w, v: po.ResolveGridRequest(community_code=v, grid_code="QH-01-01-G01"),
            ),
        ),
        (
            "grid_code",
            Field(
                "po",
                "ResolveGrid",
                "QH-01-01-G01",
                lambda w, v: po.ResolveGridRequest(community_code="QH-01-01", grid_code=v),
            ),
        ),
        (
            "root_id",
            Field("po", "WalkOrgTree", "street", lambda w, v: po.WalkOrgTreeRequest(root_id=v)),
        ),
        (
            "member_id",
            Field("po", "GetMember", "member", lambda w, v: po.GetMemberRequest(member_id=v)),
        ),
        (
            "community_code",
            Field(
                "po",
                "ReportToCommunity",
                "QH-01-01",
                lambda w, v: po.ReportToCommunityRequest(
                    member_id=w.ids["member"], community_code=v
                ),
            ),
        ),
        (
            "member_number",
            Field(
                "po",
                "AdmitMember",
                "M-2",
                lambda w, v: po.AdmitMemberRequest(
                    member_number=v, name="周洁", org_id=w.ids["grid"]
                ),
            ),
        ),
        (
            "activity_id",
            Field(
                "po",
                "RecordCardActivity",
                "meeting-1",
                lambda w, v: po.RecordCardActivityRequest(
                    member_id=w.ids["member"],
                    activity=po.CardActivity(
                        activity_id=v,
                        kind=po.CARD_ACTIVITY_KIND_MEETING,
                        description="组织生活会",
                        tenths_of_hours=10,
                        occurred_at=stamp(w.clock.now() - timedelta(days=1)),
                    ),
                ),
            ),
        ),
        (
            "feedback_id",
            Field(
                "po",
                "RecordResidentFeedback",
                "form-1",
                lambda w, v: po.RecordResidentFeedbackRequest(
                    member_id=w.ids["member"],
                    feedback=po.ResidentFeedback(feedback_id=v, rating=5, comment="好"),
                ),
            ),
        ),
        (
            "volunteer_id",
            Field(
                "vol",
                "GetVolunteer",
                "volunteer",
                lambda w, v: pb.GetVolunteerRequest(volunteer_id=v),
            ),
        ),
        (
            "activity_id",
            Field(
                "vol", "GetActivity", "activity", lambda w, v: pb.GetActivityRequest(activity_id=v)
            ),
        ),
        (
            "community_code",
            Field(
                "vol",
                "RegisterVolunteer",
                "QH-01-01",
                lambda w, v: pb.RegisterVolunteerRequest(
                    name="陈静", phone="13912345678", community_code=v
                ),
            ),
        ),
        (
            "community_code",
            Field(
                "vol",
                "CreateActivity",
                "QH-01-01",
                lambda w, v: pb.CreateActivityRequest(
                    brand=pb.BRAND_LEGAL_AID,
                    title="法律咨询",
                    organizer="社区",
                    community_code=v,
                    starts_at=stamp(w.clock.now() + timedelta(days=1)),
                    ends_at=stamp(w.clock.now() + timedelta(days=1, hours=2)),
                    capacity=5,
                ),
            ),
        ),
        (
            "source_id",
            Field(
                "vol",
                "ImportActivity",
                "old-1",
                lambda w, v: pb.ImportActivityRequest(
                    source_id=v,
                    activity=pb.CreateActivityRequest(
                        brand=pb.BRAND_LEGAL_AID,
                        title="法律咨询",
                        organizer="社区",
                        community_code="QH-01-01",
                        starts_at=stamp(w.clock.now() - timedelta(days=1, hours=2)),
                        ends_at=stamp(w.clock.now() - timedelta(days=1)),
                        capacity=5,
                    ),
                ),
            ),
        ),
    ]
}


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    async with platform(tmp_path, clock) as running:
        admin = running.token(Role.DISTRICT_ADMIN)
        volunteer = await running.stub.RegisterVolunteer(
            pb.RegisterVolunteerRequest(
                name="陈静", phone="13912345678", community_code="QH-01-01"
            ),
            metadata=admin,
        )
        activity = await running.stub.CreateActivity(
            FIELDS["CreateActivity.community_code"].request(running, "QH-01-01"), metadata=admin
        )
        running.ids["volunteer"] = volunteer.volunteer.volunteer_id
        running.ids["activity"] = activity.activity.activity_id
        yield running


def valid_value(world: World, field: Field) -> str:
    return world.ids.get(field.valid, field.valid)


@pytest.mark.parametrize("name", sorted(FIELDS))
async def test_a_mangled_identifier_is_invalid_argument_and_stores_nothing(
    world: World, name: str
) -> None:
    field = FIELDS[name]
    admin = world.token(Role.DISTRICT_ADMIN)
    stub, store = (
        (world.party_orgs, world.party.store)
        if field.service == "po"
        else (world.stub, world.volunteers.store)
    )
    call = getattr(stub, field.rpc)
    valid = valid_value(world, field)
    await call(field.request(world, valid), metadata=admin)  # the valid value is taken
    before = await store.head_position()

    answers = {}
    for mangling, mangle in MANGLINGS.items():
        value = mangle(valid)
        if not value and name in OPTIONAL:
            continue
        try:
            await call(field.request(world, value), metadata=admin)
            answers[mangling] = "OK"
        except grpc.aio.AioRpcError as refused:
            named = name.rsplit(".", 1)[-1] in refused.details() or "unit code" in refused.details()
            answers[mangling] = f"{refused.code().name}{'' if named else ' (field not named)'}"
    after = await store.head_position()  # (the other's process managers may be at work)

    assert answers == {m: "INVALID_ARGUMENT" for m in answers}
    assert after == before
