"""Party organizations: the tree, its committees, its members' roster."""

from __future__ import annotations

import enum
from typing import Any

from civitas.errors import InvalidInput, RuleViolation
from civitas.eventkit import (
    UNSEALED,
    Aggregate,
    DomainEvent,
    SealedName,
    applies,
    natural_id,
    registry,
)
from civitas.geography import UnitKind
from civitas.validation import required_text as check_text

BRANCH_CAPACITY = 50


class OrgKind(enum.StrEnum):
    STREET_WORKING_COMMITTEE = "street_working_committee"  # 大工委
    COMMUNITY_COMMITTEE = "community_committee"  # 社区大党委
    TWO_NEW_COMMITTEE = "two_new_committee"  # "两新"组织党委
    ORGAN_GENERAL_BRANCH = "organ_general_branch"  # 机关总支
    BRANCH = "branch"  # 支部
    GRID_BRANCH = "grid_branch"  # 网格支部
    BUILDING_GROUP = "building_group"  # 楼栋党小组


# Under which kinds each kind may sit (None: it may be a root).
ALLOWED_PARENTS: dict[OrgKind, frozenset[OrgKind | None]] = {
    OrgKind.STREET_WORKING_COMMITTEE: frozenset({None}),
    OrgKind.ORGAN_GENERAL_BRANCH: frozenset({None}),
    OrgKind.COMMUNITY_COMMITTEE: frozenset({OrgKind.STREET_WORKING_COMMITTEE}),
    OrgKind.TWO_NEW_COMMITTEE: frozenset({OrgKind.STREET_WORKING_COMMITTEE}),
    OrgKind.BRANCH: frozenset(
        {OrgKind.COMMUNITY_COMMITTEE, OrgKind.TWO_NEW_COMMITTEE, OrgKind.ORGAN_GENERAL_BRANCH}
    ),
    OrgKind.GRID_BRANCH: frozenset({OrgKind.COMMUNITY_COMMITTEE}),
    OrgKind.BUILDING_GROUP: frozenset({OrgKind.GRID_BRANCH, OrgKind.BRANCH}),
}

# The kind of unit each kind of org is bound to.
BOUND_UNIT: dict[OrgKind, frozenset[UnitKind]] = {
    OrgKind.STREET_WORKING_COMMITTEE: frozenset({UnitKind.STREET}),
    OrgKind.COMMUNITY_COMMITTEE: frozenset({UnitKind.COMMUNITY}),
    OrgKind.GRID_BRANCH: frozenset({UnitKind.GRID}),
    OrgKind.TWO_NEW_COMMITTEE: frozenset({UnitKind.STREET}),
    OrgKind.ORGAN_GENERAL_BRANCH: frozenset({UnitKind.DISTRICT, UnitKind.STREET}),
    OrgKind.BRANCH: frozenset(UnitKind),
    OrgKind.BUILDING_GROUP: frozenset({UnitKind.GRID, UnitKind.COMMUNITY}),
}

# One of these per unit: their ids derive from the unit's code.
ONE_PER_UNIT = {OrgKind.STREET_WORKING_COMMITTEE, OrgKind.COMMUNITY_COMMITTEE, OrgKind.GRID_BRANCH}
HOLDS_MEMBERS = {OrgKind.BRANCH, OrgKind.GRID_BRANCH, OrgKind.ORGAN_GENERAL_BRANCH}
CAPPED = {OrgKind.BRANCH, OrgKind.GRID_BRANCH}


class SeatRole(enum.StrEnum):
    SECRETARY = "secretary"
    DEPUTY_SECRETARY = "deputy_secretary"
    MEMBER = "member"
    PART_TIME_MEMBER = "part_time_member"  # 兼职委员 from a stationed unit


def org_id_for(kind: OrgKind, unit_code: str) -> str | None:
    """The derived id of an org that exists once per unit (grid branch of a grid, ...)."""
    return str(natural_id(kind.value, unit_code)) if kind in ONE_PER_UNIT else None


def new_org_id(kind: OrgKind, unit_code: str, parent_id: str | None, name: str) -> str:
    """Every org's id derives from its natural key, so a retried founding finds the same
    org: one per unit where the kind says so, else by parent, unit and name."""
    return org_id_for(kind, unit_code) or str(
        natural_id("party_org", kind.value, unit_code, parent_id or "", name.strip())
    )


def check_parent(kind: OrgKind, parent_kind: OrgKind | None) -> None:
    """Raise unless an org of ``kind`` may sit under an org of ``parent_kind``."""
    if parent_kind not in ALLOWED_PARENTS[kind]:
        where = f"under a {parent_kind}" if parent_kind else "at the top of a tree"
        allowed = sorted(k.value if k else "the top" for k in ALLOWED_PARENTS[kind])
        raise RuleViolation(f"a {kind} cannot sit {where} (allowed: {', '.join(allowed)})")


class PartyOrgFounded(DomainEvent):
    kind: OrgKind
    name: str
    parent_id: str | None
    unit_code: str


class PartyOrgMoved(DomainEvent):
    old_parent_id: str | None
    new_parent_id: str


class ChildOrgAttached(DomainEvent):
    child_id: str


class ChildOrgDetached(DomainEvent):
    child_id: str


class CommitteeMemberSeated(DomainEvent):
    """The holder's name is sealed under their person id (the member id for a member):
    forgetting that person erases it. ``holder`` is the plaintext name that events of
    schema 1 carried, before names were sealed."""

    schema_version = 2
    role: SeatRole
    holder_person: str
    holder_ciphertext: str | None
    member_id: str | None
    stationed_unit: str | None
    holder: str | None = None


class CommitteeMemberUnseated(DomainEvent):
    """``holder`` names the seat only where its holder was seated before names were
    sealed and is no member: the name that seat's own event carries in plaintext."""

    schema_version = 2
    role: SeatRole
    holder_person: str
    holder: str | None = None


@registry.upcaster("CommitteeMemberSeated", 1)
def _seated_v1(data: dict[str, Any]) -> dict[str, Any]:
    data["holder_person"] = data.get("member_id") or UNSEALED
    data["holder_ciphertext"] = None
    return data


@registry.upcaster("CommitteeMemberUnseated", 1)
def _unseated_v1(data: dict[str, Any]) -> dict[str, Any]:
    data["holder_person"] = UNSEALED  # schema 1 named the seat by its holder's name
    return data


class MemberEnrolled(DomainEvent):
    member_id: str


class MemberReleased(DomainEvent):
    member_id: str


class PartyOrgDissolved(DomainEvent):
    reason: str


class PartyOrg(Aggregate):
    """One organization of the tree; it keeps its children and its members' roster."""

    category = "party_org"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.kind = OrgKind.BRANCH
        self.name = ""
        self.parent_id: str | None = None
        self.previous_parent_id: str | None = None
        self.unit_code = ""
        self.seats: list[CommitteeMemberSeated] = []
        self.members: set[str] = set()
        self.children: set[str] = set()
        self.dissolved = False

    @classmethod
    def found(
        cls,
        org_id: str,
        kind: OrgKind,
        name: str,
        parent: PartyOrg | None,
        unit_code: str,
        unit_kind: UnitKind,
    ) -> PartyOrg:
        check_parent(kind, parent.kind if parent else None)
        if parent is not None:
            parent._check_active()
        if unit_kind not in BOUND_UNIT[kind]:
            allowed = ", ".join(sorted(BOUND_UNIT[kind]))
            raise RuleViolation(
                f"a {kind} is bound to a {allowed}, not to the {unit_kind} {unit_code}"
            )
        org = cls(org_id)
        org._record(
            PartyOrgFounded(
                kind=kind,
                name=check_text("name", name),
                parent_id=parent.id if parent else None,
                unit_code=unit_code,
            )
        )
        return org

    def move_under(self, new_parent: PartyOrg, ancestors_of_new_parent: list[str]) -> None:
        self._check_active()
        new_parent._check_active()
        if new_parent.id == self.id or self.id in ancestors_of_new_parent:
            raise RuleViolation(f"moving {self.name} under {new_parent.name} would make a cycle")
        check_parent(self.kind, new_parent.kind)
        if new_parent.id != self.parent_id:
            self._record(PartyOrgMoved(old_parent_id=self.parent_id, new_parent_id=new_parent.id))

    def attach_child(self, child_id: str) -> None:
        self._check_active()
        if child_id not in self.children:
            self._record(ChildOrgAttached(child_id=child_id))

    def detach_child(self, child_id: str) -> None:
        if child_id in self.children:
            self._record(ChildOrgDetached(child_id=child_id))

    def seat(
        self,
        role: SeatRole,
        holder: SealedName,
        member_id: str | None,
        stationed_unit: str | None,
    ) -> None:
        """Seat a person, whose name comes sealed (see ``CommitteeMemberSeated``)."""
        self._check_active()
        if role is SeatRole.PART_TIME_MEMBER and not stationed_unit:
            raise InvalidInput("a part-time member comes from a stationed unit: name it")
        if self.holds(role, holder.person_id):
            return
        if role is SeatRole.SECRETARY and any(s.role is role for s in self.seats):
            raise RuleViolation(f"{self.name} has a secretary already; unseat them first")
        self._record(
            CommitteeMemberSeated(
                role=role,
                holder_person=holder.person_id,
                holder_ciphertext=holder.ciphertext,
                member_id=member_id,
                stationed_unit=stationed_unit or None,
            )
        )

    def unseat(self, seat: CommitteeMemberSeated) -> None:
        """Free a seat (one of ``seats``, as the application found it)."""
        if seat not in self.seats:
            raise RuleViolation(f"that {seat.role} seat is not held in {self.name}")
        unsealed = seat.holder if seat.holder_person == UNSEALED else None
        self._record(
            CommitteeMemberUnseated(
                role=seat.role, holder_person=seat.holder_person, holder=unsealed
            )
        )

    def holds(self, role: SeatRole, holder_person: str) -> bool:
        return any(s.role is role and s.holder_person == holder_person for s in self.seats)

    def enroll(self, member_id: str) -> None:
        self._check_active()
        if member_id in self.members:
            return
        if self.kind not in HOLDS_MEMBERS:
            raise RuleViolation(f"a {self.kind} holds no members directly; use a branch")
        if self.kind in CAPPED and len(self.members) >= BRANCH_CAPACITY:
            raise RuleViolation(
                f"{self.name} has {BRANCH_CAPACITY} members, the most a branch may hold"
            )
        self._record(MemberEnrolled(member_id=member_id))

    def release(self, member_id: str) -> None:
        if member_id in self.members:
            self._record(MemberReleased(member_id=member_id))

    def dissolve(self, reason: str) -> None:
        self._check_active()
        reason = check_text("reason", reason, 500)
        if self.members:
            raise RuleViolation(f"{self.name} still has {len(self.members)} members")
        if self.children:
            raise RuleViolation(
                f"{self.name} still has {len(self.children)} organizations under it"
            )
        self._record(PartyOrgDissolved(reason=reason))

    def _check_active(self) -> None:
        if self.dissolved:
            raise RuleViolation(f"{self.name} is dissolved")

    @applies
    def _on_party_org_founded(self, event: PartyOrgFounded) -> None:
        self.kind, self.name = event.kind, event.name
        self.parent_id, self.unit_code = event.parent_id, event.unit_code

    @applies
    def _on_party_org_moved(self, event: PartyOrgMoved) -> None:
        self.previous_parent_id, self.parent_id = event.old_parent_id, event.new_parent_id

    @applies
    def _on_child_org_attached(self, event: ChildOrgAttached) -> None:
        self.children.add(event.child_id)

    @applies
    def _on_child_org_detached(self, event: ChildOrgDetached) -> None:
        self.children.discard(event.child_id)

    @applies
    def _on_committee_member_seated(self, event: CommitteeMemberSeated) -> None:
        self.seats.append(event)

    @applies
    def _on_committee_member_unseated(self, event: CommitteeMemberUnseated) -> None:
        self.seats = [s for s in self.seats if not (s.role is event.role and _names(s, event))]

    @applies
    def _on_member_enrolled(self, event: MemberEnrolled) -> None:
        self.members.add(event.member_id)

    @applies
    def _on_member_released(self, event: MemberReleased) -> None:
        self.members.discard(event.member_id)

    @applies
    def _on_party_org_dissolved(self, event: PartyOrgDissolved) -> None:
        self.dissolved = True


def _names(seat: CommitteeMemberSeated, unseated: CommitteeMemberUnseated) -> bool:
    """Whether an unseat frees this seat: by its holder's person or, for a seat named
    by an unsealed name (schema 1), by that name."""
    if unseated.holder is not None:
        return seat.holder == unseated.holder
    return seat.holder_person == unseated.holder_person
