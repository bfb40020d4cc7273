"""volunteers' party_orgs client, with the stub faked at the transport edge."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from civitas.chassis.auth import TokenAuthority
from civitas.errors import Unavailable
from civitas.party_orgs.application import SERVICE_ACTIVITY_PREFIX
from civitas.party_orgs.v1 import party_orgs_pb2 as po
from civitas.volunteers.members import PartyOrgsMembers
from civitas.volunteers.processes import card_activity_id


def unreachable() -> grpc.aio.AioRpcError:
    empty = grpc.aio.Metadata()
    return grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, empty, empty, "connection refused")


class GoneAfterTheFirstCall:
    """party_orgs answers GetMember, then goes away before GetPartyOrg."""

    async def GetMember(self, request: Any) -> po.GetMemberResponse:
        return po.GetMemberResponse(member=po.Member(member_id=request.member_id, org_id="o-1"))

    async def GetPartyOrg(self, request: Any) -> po.GetPartyOrgResponse:
        raise unreachable()


async def test_party_orgs_going_away_between_two_calls_is_unavailable() -> None:
    members = PartyOrgsMembers("127.0.0.1:1", TokenAuthority("s" * 40))
    members._stub = GoneAfterTheFirstCall()  # type: ignore[assignment]
    try:
        with pytest.raises(Unavailable, match="cannot be reached"):
            await members.member("m-1")
    finally:
        await members.close()


def test_hours_reach_the_card_under_an_id_only_a_service_may_use() -> None:
    derived = card_activity_id(str(uuid.uuid4()), str(uuid.uuid4()))

    assert derived.startswith(SERVICE_ACTIVITY_PREFIX)
    assert len(derived) <= 100  # the bound on an activity id
