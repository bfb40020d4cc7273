"""What volunteers asks party_orgs: is this a member, and record hours on their card."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import grpc

from civitas.chassis.auth import TokenAuthority
from civitas.chassis.client import open_channel
from civitas.errors import RuleViolation, Unavailable
from civitas.geography import community_of
from civitas.party_orgs.v1 import party_orgs_pb2 as po
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as po_grpc

UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass(frozen=True, slots=True)
class MemberInfo:
    member_id: str
    name: str
    residence_community: str | None
    org_community: str | None  # the community the member's organization belongs to
    org_unit: str | None = None  # the unit the member's organization is bound to

    @property
    def communities(self) -> set[str]:
        """Where this member may volunteer: their residence and their organization's."""
        return {c for c in (self.residence_community, self.org_community) if c}

    @property
    def units(self) -> list[str]:
        """The units the member's record belongs to in party_orgs, whose staff see the
        member's name there: the organization's unit and the community reported to."""
        return [u for u in (self.org_unit, self.residence_community) if u]


class PartyMembers(Protocol):
    async def member(self, member_id: str) -> MemberInfo | None: ...

    async def record_hours(
        self,
        member_id: str,
        activity_id: str,
        tenths_of_hours: int,
        description: str,
        occurred_at: datetime,
    ) -> None: ...


class PartyOrgsMembers:
    """party_orgs over gRPC (deadline, retries on UNAVAILABLE through the chassis)."""

    def __init__(self, address: str, authority: TokenAuthority) -> None:
        self._channel = open_channel(address, authority.service_token("volunteers"))
        self._stub = po_grpc.PartyOrgsServiceStub(self._channel)

    async def member(self, member_id: str) -> MemberInfo | None:
        try:
            reply = await self._stub.GetMember(po.GetMemberRequest(member_id=member_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            if exc.code() in UNREACHABLE:
                raise _unavailable(exc) from None
            raise  # a refused token or a bug over there: surface it as a bug, logged
        member = reply.member
        try:
            org = await self._stub.GetPartyOrg(po.GetPartyOrgRequest(org_id=member.org_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in UNREACHABLE:  # gone between the two calls
                raise _unavailable(exc) from None
            raise
        unit = org.org.unit_code
        org_community = community_of(unit) if unit else None
        return MemberInfo(
            member.member_id,
            member.name,
            member.residence_community_code or None,
            org_community,
            unit or None,
        )

    async def record_hours(
        self,
        member_id: str,
        activity_id: str,
        tenths_of_hours: int,
        description: str,
        occurred_at: datetime,
    ) -> None:
        activity = po.CardActivity(
            activity_id=activity_id,
            description=description,
            kind=po.CARD_ACTIVITY_KIND_VOLUNTEER_SERVICE,
            tenths_of_hours=tenths_of_hours,
        )
        activity.occurred_at.FromDatetime(occurred_at)
        try:
            await self._stub.RecordCardActivity(
                po.RecordCardActivityRequest(member_id=member_id, activity=activity)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in UNREACHABLE:
                raise _unavailable(exc) from None
            if exc.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.ALREADY_EXISTS,  # the card holds other hours under that id
            ):
                raise RuleViolation(
                    f"party_orgs refused the card activity: {exc.details()}"
                ) from None
            raise

    async def close(self) -> None:
        await self._channel.close(None)


def _unavailable(exc: grpc.aio.AioRpcError) -> Unavailable:
    return Unavailable(f"party_orgs cannot be reached ({exc.code().name}); nothing was changed")
