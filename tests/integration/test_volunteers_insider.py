"""An insider against party_orgs and volunteers together, over real gRPC servers.

A community's staff used to report any working member of the district to their own
community (ReportToCommunity checked the target community only); volunteers' process
manager then made the member a profile there, and GetVolunteer showed the member's
name, which party_orgs hides from that caller. Names now follow one rule through both
doors: a member's name shows to whom works for the member's organization's unit or the
community they report to, and the member's volunteer profile follows the member.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from civitas.chassis.auth import HIDDEN, Role
from civitas.eventkit import ManualClock
from civitas.party_orgs.v1 import party_orgs_pb2 as po
from civitas.volunteers.domain.volunteers import volunteer_id_for_member
from civitas.volunteers.v1 import volunteers_pb2 as pb
from tests.support.processes import eventually, handled_all
from tests.support.volunteers_platform import World, platform, profile_events

R = Role
CALLERS: dict[str, tuple[Role, tuple[str, ...]]] = {
    "district admin": (R.DISTRICT_ADMIN, ("QH",)),
    "auditor": (R.AUDITOR, ("QH",)),
    "finance officer of the district": (R.FINANCE_OFFICER, ("QH",)),
    "street staff of QH-01": (R.STREET_STAFF, ("QH-01",)),
    "street staff of QH-02": (R.STREET_STAFF, ("QH-02",)),
    "community staff of QH-01-01": (R.COMMUNITY_STAFF, ("QH-01-01",)),
    "community staff of QH-02-01": (R.COMMUNITY_STAFF, ("QH-02-01",)),
    "coordinator of QH-02-02": (R.VOLUNTEER_COORDINATOR, ("QH-02-02",)),
    "grid worker of QH-01-01-G01": (R.GRID_WORKER, ("QH-01-01-G01",)),
    "grid worker of QH-01-01-G02": (R.GRID_WORKER, ("QH-01-01-G02",)),
    "party secretary of QH-03": (R.PARTY_SECRETARY, ("QH-03",)),
}


async def register_street_two(world: World) -> None:
    admin = world.token(R.DISTRICT_ADMIN)
    for code, name in [("QH-02", "双塘街道"), ("QH-02-01", "双塘社区"), ("QH-02-02", "西社区")]:
        await world.party_orgs.RegisterAdminUnit(
            po.RegisterAdminUnitRequest(code=code, name=name, population=100), metadata=admin
        )


async def names_shown(world: World, member_id: str) -> dict[str, tuple[bool, bool]]:
    """For each caller: whether party_orgs shows the member's name, and whether
    volunteers shows the name of the member's profile."""
    shown = {}
    for who, (role, scope) in CALLERS.items():
        token = world.token(role, scope=scope)
        member = await world.party_orgs.GetMember(
            po.GetMemberRequest(member_id=member_id), metadata=token
        )
        volunteer = await world.stub.GetVolunteer(
            pb.GetVolunteerRequest(volunteer_id=volunteer_id_for_member(member_id)),
            metadata=token,
        )
        shown[who] = (member.member.name != HIDDEN, volunteer.volunteer.name != HIDDEN)
    return shown


async def profile_in(world: World, member_id: str, community: str) -> None:
    async def there() -> bool:
        found = await world.volunteers.app.volunteers.find(volunteer_id_for_member(member_id))
        return found is not None and found.community_code == community

    await eventually(there, f"the member's volunteer profile in {community}")


async def test_a_communitys_staff_cannot_pull_a_member_of_another_street_into_their_community(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with platform(tmp_path, clock) as world:
        await register_street_two(world)
        member = world.ids["member"]  # working, in a grid branch of QH-01-01
        insider = world.token(R.COMMUNITY_STAFF, scope=("QH-02-01",))
        before = await world.party.store.head_position()

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await world.party_orgs.ReportToCommunity(
                po.ReportToCommunityRequest(member_id=member, community_code="QH-02-01"),
                metadata=insider,
            )
        after = await world.party.store.head_position()
        await handled_all(world.volunteers.processes[0], world.party.store)
        profile_after_attack = await profile_events(world, member)
        with pytest.raises(grpc.aio.AioRpcError) as no_profile:
            await world.stub.GetVolunteer(
                pb.GetVolunteerRequest(volunteer_id=volunteer_id_for_member(member)),
                metadata=insider,
            )
        await world.party_orgs.ReportToCommunity(  # where the member really lives
            po.ReportToCommunityRequest(member_id=member, community_code="QH-01-01"),
            metadata=world.token(R.DISTRICT_ADMIN),
        )
        await profile_in(world, member, "QH-01-01")
        seen_by_insider = await world.stub.GetVolunteer(
            pb.GetVolunteerRequest(volunteer_id=volunteer_id_for_member(member)),
            metadata=insider,
        )
        member_seen_by_insider = await world.party_orgs.GetMember(
            po.GetMemberRequest(member_id=member), metadata=insider
        )

    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "not for QH-01-01-G01" in refused.value.details()  # the member's organization
    assert after == before  # nothing stored
    assert profile_after_attack == []
    assert no_profile.value.code() is grpc.StatusCode.NOT_FOUND
    assert (seen_by_insider.volunteer.name, member_seen_by_insider.member.name) == (HIDDEN, HIDDEN)


async def test_a_members_name_shows_in_volunteers_exactly_where_party_orgs_shows_it(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with platform(tmp_path, clock) as world:
        await register_street_two(world)
        admin = world.token(R.DISTRICT_ADMIN)
        member = world.ids["member"]  # in a grid branch of QH-01-01-G01
        await world.party_orgs.ReportToCommunity(
            po.ReportToCommunityRequest(member_id=member, community_code="QH-02-01"),
            metadata=admin,
        )
        await profile_in(world, member, "QH-02-01")
        living_in_qh_02_01 = await names_shown(world, member)

        await world.party_orgs.ReportToCommunity(  # moved house
            po.ReportToCommunityRequest(member_id=member, community_code="QH-02-02"),
            metadata=admin,
        )
        await profile_in(world, member, "QH-02-02")
        moved_house = await names_shown(world, member)

        organ = await world.party_orgs.FoundPartyOrg(
            po.FoundPartyOrgRequest(
                kind=po.PARTY_ORG_KIND_ORGAN_GENERAL_BRANCH,
                name="双塘街道机关总支",
                unit_code="QH-02",
            ),
            metadata=admin,
        )
        for call, request in [
            (
                world.party_orgs.StartMemberTransfer,
                po.StartMemberTransferRequest(member_id=member, to_org_id=organ.org.org_id),
            ),
            (
                world.party_orgs.ReceiveMemberTransfer,
                po.ReceiveMemberTransferRequest(member_id=member),
            ),
        ]:
            await call(request, metadata=admin)

        async def followed_the_transfer() -> bool:
            found = await world.volunteers.app.volunteers.get(volunteer_id_for_member(member))
            return "QH-02" in found.member_units

        await eventually(followed_the_transfer, "the profile following the transfer")
        transferred = await names_shown(world, member)

    everywhere = {"district admin", "auditor"}
    assert {who for who, (po_shows, _) in living_in_qh_02_01.items() if po_shows} == everywhere | {
        "street staff of QH-01",
        "street staff of QH-02",
        "community staff of QH-01-01",
        "community staff of QH-02-01",
        "grid worker of QH-01-01-G01",
    }
    assert {who for who, (po_shows, _) in moved_house.items() if po_shows} == everywhere | {
        "street staff of QH-01",
        "street staff of QH-02",
        "community staff of QH-01-01",
        "coordinator of QH-02-02",
        "grid worker of QH-01-01-G01",
    }
    assert {who for who, (po_shows, _) in transferred.items() if po_shows} == everywhere | {
        "street staff of QH-02",
        "coordinator of QH-02-02",
    }
    for shown in (living_in_qh_02_01, moved_house, transferred):
        differ = {who: both for who, both in shown.items() if both[0] != both[1]}
        assert differ == {}, "(party_orgs shows, volunteers shows) differ"
