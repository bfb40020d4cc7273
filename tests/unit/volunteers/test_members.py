"""volunteers' party_orgs client, with the stub faked at the transport edge."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from civitas.chassis.auth import TokenAuthority
from civitas.errors import Unavailable
from civitas.party_orgs.v1 import party_orgs_pb2 as po
from civitas.volunteers.members import PartyOrgsMembers


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
