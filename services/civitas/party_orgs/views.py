"""party_orgs' queries (cosmicpython's ``views``): an aggregate by its id, the lists and
the tree walk from the directory, ``ResolveGrid``'s lookup, and the names a record
holds, shown by the one rule over personal data (``may_see_personal_data``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from civitas.chassis.auth import HIDDEN, Principal, may_see_personal_data
from civitas.errors import InvalidInput, NotFound
from civitas.geography import grid_of

from .application import PartyOrgs, holder_of
from .directory import DirectoryQueries
from .domain.members import Member
from .domain.orgs import CommitteeMemberSeated, OrgKind, PartyOrg, org_id_for
from .domain.pairings import Pairing
from .domain.units import AdminUnit, GridPostAssigned


@dataclass(frozen=True, slots=True)
class Holder:
    """A grid post's or committee seat's holder as a caller sees them."""

    name: str
    person_id: str


@dataclass(frozen=True, slots=True)
class GridFound:
    """What ``ResolveGrid`` answers: the grid and its grid branch (None when it has no
    standing one)."""

    grid: AdminUnit
    branch: PartyOrg | None


class PartyOrgViews:
    """Reads for party_orgs' edge. Lists and lookups catch up with the directory first,
    so a caller reads their own writes."""

    def __init__(
        self,
        app: PartyOrgs,
        directory: DirectoryQueries,
        directory_ready: Callable[[], Awaitable[None]],
    ) -> None:
        self.app = app
        self.directory = directory
        self.directory_ready = directory_ready

    async def unit(self, code: str) -> AdminUnit:
        return await self.app.units.load(code, "unit")

    async def org(self, org_id: str) -> PartyOrg:
        return await self.app.orgs.load(org_id, "organization")

    async def member(self, member_id: str) -> Member:
        return await self.app.members.load(member_id, "member")

    async def pairing(self, pairing_id: str) -> Pairing:
        return await self.app.pairings.load(pairing_id, "pairing")

    async def units_under(self, parent_code: str | None) -> list[AdminUnit]:
        """The units under a unit (the districts when None), by code."""
        await self.directory_ready()
        codes = await asyncio.to_thread(self.directory.children, parent_code)
        return [await self.unit(code) for code in codes]

    async def walk(self, root_id: str | None, max_depth: int) -> list[tuple[PartyOrg, int]]:
        """Standing orgs depth first with their depth, parents before children (every
        tree when no root; ``max_depth`` 0 for all levels)."""
        if max_depth < 0:
            raise InvalidInput("max_depth must be >= 0")
        if root_id is not None:
            await self.org(root_id)
        await self.directory_ready()
        nodes = await asyncio.to_thread(self.directory.walk, root_id, max_depth)
        return [(await self.org(n.org_id), n.depth) for n in nodes]

    async def pairings_of(self, org_id: str | None) -> list[Pairing]:
        """The pairings an org is in (every pairing when None)."""
        await self.directory_ready()
        ids = await asyncio.to_thread(self.directory.pairings_of, org_id)
        return [await self.pairing(i) for i in ids]

    async def resolve_grid(
        self, community_code: str, grid_code: str | None, address: str
    ) -> GridFound:
        """The grid named, which must lie in the community, or else the community's grid
        whose address prefix matches ``address`` longest; with its grid branch."""
        if grid_code:
            grid_of(community_code, grid_code)
        elif address.strip():
            await self.directory_ready()
            found = await asyncio.to_thread(
                self.directory.grid_covering, community_code, address.strip()
            )
            if found is None:
                raise NotFound(f"no grid of {community_code} covers {address!r}")
            grid_code = found
        else:
            raise InvalidInput("give an address or a grid_code")
        grid = await self.app.units.load(grid_code, "grid")
        branch_id = org_id_for(OrgKind.GRID_BRANCH, grid_code)
        branch = await self.app.orgs.find(branch_id) if branch_id else None
        return GridFound(grid, branch if branch and not branch.dissolved else None)

    # -- personal data, by the one rule -----------------------------------------------

    async def member_name(self, principal: Principal, member: Member) -> str:
        """A member's record belongs to their organization's unit and to the community
        they report to: their name shows to callers who work for either."""
        units = (await self.app.unit_of(member.org_id), member.residence_community or "")
        if not may_see_personal_data(principal, *units):
            return HIDDEN
        return await self.app.vault.show(member.id, member.name_ciphertext)

    async def holder(
        self,
        principal: Principal,
        held: GridPostAssigned | CommitteeMemberSeated,
        unit_code: str,
    ) -> Holder:
        """A post's holder belongs to the grid, a seat's to the org's unit: the name shows
        to callers who work for it; the person's id to anyone."""
        person = await self.app.holder_person(held)
        if not may_see_personal_data(principal, unit_code):
            return Holder(HIDDEN, person)
        return Holder(await self.app.vault.show_name(holder_of(held)), person)
