"""Where cases learns which grid handles a request: party_orgs' ResolveGrid, over gRPC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc

from civitas.chassis.auth import TokenAuthority
from civitas.chassis.client import open_channel
from civitas.errors import InvalidInput, RuleViolation, Unavailable
from civitas.eventkit.personal import ERASED
from civitas.party_orgs.v1 import party_orgs_pb2 as po
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as po_grpc

LEAD_POSTS = ("网格长", "网格员")


@dataclass(frozen=True, slots=True)
class Assignment:
    """The grid a request goes to, its party branch, and the person who takes it: their
    name and the person id party_orgs seals it under (a member's is the member id)."""

    grid_code: str
    grid_branch_id: str | None
    handler: str
    handler_person: str


class GridResolver(Protocol):
    async def resolve(
        self, community_code: str, address: str | None, grid_code: str | None
    ) -> Assignment: ...


class PartyOrgsGrids:
    """ResolveGrid on party_orgs, with a deadline and retries on UNAVAILABLE (chassis)."""

    def __init__(self, address: str, authority: TokenAuthority, timeout_seconds: float = 3.0):
        token = authority.service_token("cases", scope=("QH",))
        self._channel = open_channel(address, token, timeout_seconds=timeout_seconds)
        self._stub = po_grpc.PartyOrgsServiceStub(self._channel)

    async def resolve(
        self, community_code: str, address: str | None, grid_code: str | None
    ) -> Assignment:
        request = (
            po.ResolveGridRequest(community_code=community_code, grid_code=grid_code)
            if grid_code
            else po.ResolveGridRequest(community_code=community_code, address=address or "")
        )
        try:
            reply = await self._stub.ResolveGrid(request)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(
                    f"party_orgs cannot be reached ({code.name}); nothing was changed, try again"
                ) from None
            if code is grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidInput(exc.details() or "bad grid request") from None
            if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                raise RuleViolation(f"no handling unit: {exc.details()}") from None
            raise  # anything else (a refused token, a bug over there) is a bug: log it
        # A forgotten holder still on a post is passed over: nobody can be named to the
        # case, and sealing "[erased]" under their id would give them a key again.
        holders = {
            p.post: (p.holder, p.person_id) for p in reply.post_holders if p.holder != ERASED
        }
        secretary = next(
            ((s.holder, s.person_id) for s in reply.grid_branch.seats if s.holder != ERASED), None
        )
        handler = next((holders[p] for p in LEAD_POSTS if p in holders), None) or secretary
        if handler is None:
            raise RuleViolation(f"grid {reply.grid.code} has nobody on its posts to take the case")
        return Assignment(reply.grid.code, reply.grid_branch.org_id or None, *handler)

    async def close(self) -> None:
        await self._channel.close(None)
