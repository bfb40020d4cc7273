"""party_orgs over gRPC for tests of it and of the services that call it: a client of a
running party_orgs, and a small district seeded through its API."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from civitas.chassis.auth import Role, TokenAuthority
from civitas.eventkit import EventStore
from civitas.party_orgs.v1 import party_orgs_pb2 as pb
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as pb_grpc


@dataclass
class Client:
    stub: pb_grpc.PartyOrgsServiceStub
    channel: grpc.aio.Channel
    authority: TokenAuthority
    store: EventStore

    async def head(self) -> int:
        return await self.store.head_position()

    def token(
        self, *roles: Role, scope: tuple[str, ...] = ("QH",), subject: str = "staff-1"
    ) -> list:
        return [("authorization", f"Bearer {self.authority.mint(subject, roles, scope)}")]


async def seed(client: Client) -> dict[str, str]:
    """A district with a street, a community, a grid with a post, orgs, a member."""
    admin = client.token(Role.DISTRICT_ADMIN)
    s = client.stub
    for code, name in [("QH", "秦淮区"), ("QH-01", "大光路街道"), ("QH-01-01", "大光路社区")]:
        await s.RegisterAdminUnit(
            pb.RegisterAdminUnitRequest(code=code, name=name, population=100), metadata=admin
        )
    await s.RegisterAdminUnit(
        pb.RegisterAdminUnitRequest(
            code="QH-01-01-G01",
            name="第一网格",
            population=800,
            addresses=["大光路1号", "大光路12号"],
        ),
        metadata=admin,
    )
    await s.RegisterAdminUnit(
        pb.RegisterAdminUnitRequest(
            code="QH-01-01-G02", name="第二网格", population=700, addresses=["大光路1"]
        ),
        metadata=admin,
    )
    await s.AssignGridPost(
        pb.AssignGridPostRequest(
            grid_code="QH-01-01-G01", post="网格长", holder="王芳", duty="巡查"
        ),
        metadata=admin,
    )
    kinds = pb.PartyOrgKind
    street = (
        await s.FoundPartyOrg(
            pb.FoundPartyOrgRequest(
                kind=kinds.PARTY_ORG_KIND_STREET_WORKING_COMMITTEE, name="大工委", unit_code="QH-01"
            ),
            metadata=admin,
        )
    ).org
    community = (
        await s.FoundPartyOrg(
            pb.FoundPartyOrgRequest(
                kind=kinds.PARTY_ORG_KIND_COMMUNITY_COMMITTEE,
                name="社区大党委",
                parent_id=street.org_id,
                unit_code="QH-01-01",
            ),
            metadata=admin,
        )
    ).org
    grid = (
        await s.FoundPartyOrg(
            pb.FoundPartyOrgRequest(
                kind=kinds.PARTY_ORG_KIND_GRID_BRANCH,
                name="第一网格支部",
                parent_id=community.org_id,
                unit_code="QH-01-01-G01",
            ),
            metadata=admin,
        )
    ).org
    organ = (
        await s.FoundPartyOrg(
            pb.FoundPartyOrgRequest(
                kind=kinds.PARTY_ORG_KIND_ORGAN_GENERAL_BRANCH,
                name="区财政局机关总支",
                unit_code="QH",
            ),
            metadata=admin,
        )
    ).org
    member = (
        await s.AdmitMember(
            pb.AdmitMemberRequest(
                member_number="M-1",
                name="李明",
                org_id=grid.org_id,
                working=True,
                employer="区财政局",
            ),
            metadata=admin,
        )
    ).member
    pairing = (
        await s.FormPairing(
            pb.FormPairingRequest(organ_org_id=organ.org_id, community_org_id=community.org_id),
            metadata=admin,
        )
    ).pairing
    return {
        "street": street.org_id,
        "community": community.org_id,
        "grid": grid.org_id,
        "organ": organ.org_id,
        "member": member.member_id,
        "pairing": pairing.pairing_id,
    }
