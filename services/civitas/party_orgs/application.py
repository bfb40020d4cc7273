"""party_orgs commands: authorize, load, call one domain method, save.

Some commands change more than one aggregate (founding an org attaches it to its
parent; admitting a member enrolls them in the org's roster first, for the
capacity rule). Each step is idempotent and the steps run in an order that a
retried command completes what a crash left half done.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from civitas.chassis.auth import Caller, Role, authorize, authorize_all
from civitas.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NotAllowed,
    RuleViolation,
)
from civitas.eventkit import (
    UNSEALED,
    Clock,
    EventStore,
    Repository,
    SealedName,
)
from civitas.eventkit.personal import ERASED, PersonalDataVault
from civitas.geography import UnitKind, checked_community, parse_unit_code
from civitas.validation import required_text as check_text

from .domain.members import AppraisalRating, CardActivityKind, Member, member_id_for
from .domain.orgs import CommitteeMemberSeated, OrgKind, PartyOrg, SeatRole, new_org_id
from .domain.pairings import Pairing, pairing_id_for
from .domain.units import AdminUnit, GridPostAssigned

R = Role
UNIT_ADMINS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF}
ORG_ADMINS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.PARTY_SECRETARY}
MEMBER_ADMINS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF, R.PARTY_SECRETARY}
CARD_WRITERS = {
    R.DISTRICT_ADMIN,
    R.COMMUNITY_STAFF,
    R.PARTY_SECRETARY,
    R.VOLUNTEER_COORDINATOR,
    R.SERVICE,
}
PAIRING_ADMINS = {R.DISTRICT_ADMIN, R.STREET_STAFF}
SERVICE_ACTIVITY_PREFIX = "volunteer-"
"""The ids volunteers' process manager gives a member's verified hours on the card
(``volunteer-{activity}-{volunteer}``): a namespace only a service's token may write."""


class PartyOrgs:
    """The party_orgs application service."""

    def __init__(self, store: EventStore, vault: PersonalDataVault, clock: Clock) -> None:
        self.units = Repository(store, AdminUnit)
        self.orgs = Repository(store, PartyOrg)
        self.members = Repository(store, Member)
        self.pairings = Repository(store, Pairing)
        self.vault = vault
        self.clock = clock
        self._org_units: dict[str, str] = {}

    # -- administrative units ---------------------------------------------

    async def register_unit(
        self, caller: Caller, code: str, name: str, population: int, addresses: list[str]
    ) -> AdminUnit:
        kind, parent_code = parse_unit_code(code)
        authorize(
            caller.principal,
            {R.DISTRICT_ADMIN} if kind is UnitKind.DISTRICT else UNIT_ADMINS,
            parent_code or code,
        )
        if parent_code is not None:
            await self.units.load(parent_code, "parent unit", RuleViolation)
        unit = AdminUnit.register(code, name, population, addresses)
        if await self.units.create_or_fetch(unit, caller.metadata) is not unit:
            raise RuleViolation(f"unit {code} is registered already")
        return unit

    async def rename_unit(self, caller: Caller, code: str, name: str) -> AdminUnit:
        authorize(caller.principal, UNIT_ADMINS, _parent_or_self(code))
        return await self.units.update(code, lambda u: u.rename(name), caller.metadata, kind="unit")

    async def open_service_centre(self, caller: Caller, street_code: str, name: str) -> AdminUnit:
        authorize(caller.principal, UNIT_ADMINS, street_code)
        return await self.units.update(
            street_code, lambda u: u.open_service_centre(name), caller.metadata, kind="unit"
        )

    async def assign_post(
        self,
        caller: Caller,
        grid_code: str,
        post: str,
        holder: str,
        member_id: str | None,
        duty: str,
    ) -> AdminUnit:
        authorize(caller.principal, UNIT_ADMINS, grid_code)
        sealed = await self._seal_holder(holder, member_id)
        return await self.units.update(
            grid_code,
            lambda u: u.assign_post(post, sealed, member_id, duty),
            caller.metadata,
            kind="unit",
        )

    async def vacate_post(self, caller: Caller, grid_code: str, post: str) -> AdminUnit:
        authorize(caller.principal, UNIT_ADMINS, grid_code)
        return await self.units.update(
            grid_code, lambda u: u.vacate_post(post), caller.metadata, kind="unit"
        )

    # -- party organizations ------------------------------------------------

    async def found_org(
        self, caller: Caller, kind: OrgKind, name: str, parent_id: str | None, unit_code: str
    ) -> PartyOrg:
        """Found an org bound to a unit and attach it to its parent: the caller works for
        both the unit and the parent's unit (the parent's list of children changes)."""
        parse_unit_code(unit_code)
        authorize(caller.principal, ORG_ADMINS, unit_code)
        unit = await self.units.load(unit_code, "unit", RuleViolation)
        parent = (
            await self.orgs.load(parent_id, "parent organization", RuleViolation)
            if parent_id
            else None
        )
        if parent is not None:
            authorize_all(caller.principal, ORG_ADMINS, unit_code, parent.unit_code)
        org_id = new_org_id(kind, unit_code, parent_id, name)
        org = PartyOrg.found(org_id, kind, name, parent, unit_code, unit.kind)
        stored = await self.orgs.create_or_fetch(org, caller.metadata)
        if stored is not org and not _same_founding(stored, parent_id, name):
            raise RuleViolation(f"{unit_code} has a {kind} already")  # one per unit
        org = stored
        if parent is not None:
            await self.orgs.update(
                parent.id, lambda p: p.attach_child(org.id), caller.metadata, kind="organization"
            )
        return org

    async def move_org(self, caller: Caller, org_id: str, new_parent_id: str) -> PartyOrg:
        """Move an org under another; a retry after a crash completes the attach to the
        new parent and the detach from the previous one (the org remembers it). The
        caller works for the org's unit, the new parent's and the previous parent's
        while that one still lists the org."""
        org = await self.orgs.load(org_id, "organization")
        authorize(caller.principal, ORG_ADMINS, org.unit_code)
        new_parent = await self.orgs.load(new_parent_id, "organization", RuleViolation)
        leaving = org.parent_id if org.parent_id != new_parent_id else org.previous_parent_id
        units = [org.unit_code, new_parent.unit_code]
        if leaving and leaving != new_parent_id:
            left = await self.orgs.get(leaving)
            if org_id in left.children:
                units.append(left.unit_code)
        authorize_all(caller.principal, ORG_ADMINS, *units)
        if org.parent_id != new_parent_id:
            ancestors = await self.ancestors(new_parent)
            org = await self.orgs.update(
                org_id, lambda o: o.move_under(new_parent, ancestors), caller.metadata, loaded=org
            )
        await self.orgs.update(
            new_parent_id, lambda p: p.attach_child(org_id), caller.metadata, kind="organization"
        )
        previous = org.previous_parent_id
        if previous and previous != new_parent_id:
            await self.orgs.update(
                previous, lambda p: p.detach_child(org_id), caller.metadata, kind="organization"
            )
        return org

    async def seat(
        self,
        caller: Caller,
        org_id: str,
        role: SeatRole,
        holder: str,
        member_id: str | None,
        stationed_unit: str | None,
    ) -> PartyOrg:
        await self._authorize_for_org(caller, ORG_ADMINS, org_id)
        sealed = await self._seal_holder(holder, member_id)
        return await self.orgs.update(
            org_id,
            lambda o: o.seat(role, sealed, member_id, stationed_unit),
            caller.metadata,
            kind="organization",
        )

    async def unseat(
        self, caller: Caller, org_id: str, role: SeatRole, holder: str, person_id: str | None
    ) -> PartyOrg:
        """Unseat the holder of a seat, named by their person id or, while they are not
        forgotten, by their name."""
        await self._authorize_for_org(caller, ORG_ADMINS, org_id)
        org = await self.orgs.load(org_id, "organization")
        seat = await self._seat_held(org, role, holder, person_id)
        return await self.orgs.update(org_id, lambda o: o.unseat(seat), caller.metadata, loaded=org)

    async def holder_person(self, held: GridPostAssigned | CommitteeMemberSeated) -> str:
        """The person a post or seat is held by. A holder named in plaintext before names
        were sealed, and no member, gets the id the vault keeps for that name, as a new
        holder would: the name itself never leaves as an id."""
        if held.holder_person != UNSEALED:
            return held.holder_person
        return await self.vault.person_for("holder", held.holder or "")

    async def _seal_holder(self, holder: str, member_id: str | None) -> SealedName:
        """The holder's name sealed under their person id: a member's is their member
        id; anyone else's is one the vault keeps for the name."""
        name = check_text("holder", holder)
        if member_id:
            await self.members.load(member_id, "member", RuleViolation)
        person = member_id or await self.vault.person_for("holder", name)
        return await self.vault.seal_name(person, name)

    async def _seat_held(
        self, org: PartyOrg, role: SeatRole, holder: str, person_id: str | None
    ) -> CommitteeMemberSeated:
        if holder and person_id:
            raise InvalidInput("name the holder or give their person_id, not both")
        name = "" if person_id else check_text("holder", holder)
        if name == ERASED:
            raise InvalidInput(f"{ERASED} names no one: give the holder's person_id")
        for seat in org.seats:
            if seat.role is not role:
                continue
            if person_id and await self.holder_person(seat) == person_id:
                return seat
            if name and await self.vault.show_name(holder_of(seat)) == name:
                return seat
        raise RuleViolation(f"{person_id or name} holds no {role} seat in {org.name}")

    async def dissolve_org(self, caller: Caller, org_id: str, reason: str) -> PartyOrg:
        """Dissolve an empty org and detach it from its parent; dissolving again (a retry
        after a crash) completes the detach. The caller works for the org's unit and its
        parent's (whose list of children changes)."""
        await self._authorize_for_org(caller, ORG_ADMINS, org_id)
        org = await self.orgs.load(org_id, "organization")
        if org.parent_id:
            authorize_all(
                caller.principal, ORG_ADMINS, org.unit_code, await self.unit_of(org.parent_id)
            )
        if not org.dissolved:
            org = await self.orgs.update(
                org_id, lambda o: o.dissolve(reason), caller.metadata, loaded=org
            )
        if org.parent_id:
            await self.orgs.update(
                org.parent_id,
                lambda p: p.detach_child(org_id),
                caller.metadata,
                kind="organization",
            )
        return org

    async def ancestors(self, org: PartyOrg) -> list[str]:
        """The ids above an org, nearest first."""
        found: list[str] = []
        while org.parent_id and org.parent_id not in found:
            found.append(org.parent_id)
            org = await self.orgs.get(org.parent_id)
        return found

    # -- members ------------------------------------------------------------

    async def admit_member(
        self,
        caller: Caller,
        member_number: str,
        name: str,
        org_id: str,
        working: bool,
        employer: str | None,
    ) -> Member:
        """Enroll in the org's roster (the capacity rule), then record the member; the
        member is checked before the roster changes, and a retry completes both. The
        member number names one admission: the same one again is a retry, any other
        (another org, name or employer) is refused."""
        if not (name or "").strip():
            raise InvalidInput("name is required")
        await self._authorize_for_org(caller, MEMBER_ADMINS, org_id)
        member_id = member_id_for((member_number or "").strip() or "-")
        existing = await self.members.find(member_id)
        if existing is not None:
            admitted = (existing.org_id, existing.working, existing.employer)
            asked = (org_id, working, (employer or "").strip() or None)
            if admitted == asked and await self._name_of(existing) == name.strip():
                return existing  # a retry
            raise AlreadyExists(
                f"member number {member_number} is admitted already, as another admission"
            )
        member = Member.admit(
            member_number, await self.vault.seal(member_id, name.strip()), org_id, working, employer
        )
        await self.orgs.update(
            org_id, lambda o: o.enroll(member_id), caller.metadata, kind="organization"
        )
        await self.members.save(member, caller.metadata)
        return member

    async def start_transfer(self, caller: Caller, member_id: str, to_org_id: str) -> Member:
        """Start a transfer. The sending organization writes the letter, so the caller
        works for the member's organization; the receiving one agrees by receiving."""
        member = await self._member_in_scope(caller, MEMBER_ADMINS, member_id)
        target = await self.orgs.load(to_org_id, "organization", RuleViolation)
        if target.dissolved:
            raise RuleViolation(f"{target.name} is dissolved")
        now = self.clock.now()
        return await self._change_member(caller, member, lambda m: m.start_transfer(to_org_id, now))

    async def receive_transfer(self, caller: Caller, member_id: str) -> Member:
        """Enroll in the new org, move the member, release from the old org. A retry after
        a crash between the steps finds the member moved and completes the rest. The
        caller works for the receiving organization; the release from the sending one
        was agreed when that one started the transfer."""
        authorize_all(caller.principal, MEMBER_ADMINS)
        member = await self.members.load(member_id, "member")
        now = self.clock.now()
        if member.transfer is not None:
            source, target = member.transfer.from_org_id, member.transfer.to_org_id
            await self._authorize_for_org(caller, MEMBER_ADMINS, target)
            if now > member.transfer.letter_expires_at:
                member.receive_transfer(now)  # raises: the letter expired
            await self.orgs.update(
                target, lambda o: o.enroll(member_id), caller.metadata, kind="organization"
            )
            member = await self.members.update(
                member_id,
                _still_bound_for(target, lambda m: m.receive_transfer(now)),
                caller.metadata,
                loaded=member,
            )
        elif member.last_transfer is not None and member.org_id == member.last_transfer.to_org_id:
            source, target = member.last_transfer.from_org_id, member.last_transfer.to_org_id
            await self._authorize_for_org(caller, MEMBER_ADMINS, target)
        else:
            raise RuleViolation("no transfer is under way")
        await self.orgs.update(
            target, lambda o: o.enroll(member_id), caller.metadata, kind="organization"
        )
        await self.orgs.update(
            source, lambda o: o.release(member_id), caller.metadata, kind="organization"
        )
        return member

    async def cancel_transfer(self, caller: Caller, member_id: str, reason: str) -> Member:
        """Withdraw a transfer letter: the sending organization's decision."""
        member = await self._member_in_scope(caller, MEMBER_ADMINS, member_id)
        return await self._change_member(caller, member, lambda m: m.cancel_transfer(reason))

    async def report_to_community(
        self, caller: Caller, member_id: str, community_code: str
    ) -> Member:
        """A working member reports to a residence community. The caller works for both
        the member's organization and that community: the member's record then belongs
        to the community too, and its staff see the member's name."""
        checked_community(community_code)
        authorize(caller.principal, MEMBER_ADMINS, community_code)
        member = await self.members.load(member_id, "member")
        authorize_all(
            caller.principal, MEMBER_ADMINS, await self.unit_of(member.org_id), community_code
        )
        await self.units.load(community_code, "community", RuleViolation)
        return await self._change_member(
            caller, member, lambda m: m.report_to_community(community_code)
        )

    async def record_activity(
        self,
        caller: Caller,
        member_id: str,
        activity_id: str,
        kind: CardActivityKind,
        description: str,
        tenths_of_hours: int,
        occurred_at: datetime,
    ) -> Member:
        """Record an activity on the card under the caller's id for it; the same id again
        with the same content changes nothing, with other content it is refused."""
        _check_activity_id_for(caller, activity_id)
        member = await self._member_in_scope(caller, CARD_WRITERS, member_id)
        now = self.clock.now()
        return await self._change_member(
            caller,
            member,
            lambda m: m.record_activity(
                activity_id, kind, description, tenths_of_hours, occurred_at, now
            ),
        )

    async def record_feedback(
        self, caller: Caller, member_id: str, feedback_id: str, rating: int, comment: str
    ) -> Member:
        member = await self._member_in_scope(caller, CARD_WRITERS, member_id)
        now = self.clock.now()
        return await self._change_member(
            caller, member, lambda m: m.record_feedback(feedback_id, rating, comment, now)
        )

    async def rate_appraisal(
        self, caller: Caller, member_id: str, year: int, rating: AppraisalRating
    ) -> Member:
        member = await self._member_in_scope(caller, MEMBER_ADMINS, member_id)
        now = self.clock.now()
        return await self._change_member(
            caller, member, lambda m: m.rate_appraisal(year, rating, now)
        )

    # -- pairings -------------------------------------------------------------

    async def form_pairing(
        self, caller: Caller, organ_org_id: str, community_org_id: str
    ) -> Pairing:
        """Pair an organ's org with a community's: the caller works for both units."""
        authorize_all(caller.principal, PAIRING_ADMINS)
        organ = await self.orgs.load(organ_org_id, "organization", RuleViolation)
        community = await self.orgs.load(community_org_id, "organization", RuleViolation)
        authorize_all(caller.principal, PAIRING_ADMINS, organ.unit_code, community.unit_code)
        pairing_id = pairing_id_for(organ_org_id, community_org_id)
        pairing = await self.pairings.find(pairing_id) or Pairing(pairing_id)
        pairing.form(organ, community, self.clock.now())
        await self.pairings.save(pairing, caller.metadata)
        return pairing

    async def end_pairing(self, caller: Caller, pairing_id: str, reason: str) -> Pairing:
        """End a pairing: as forming it, the caller works for both organizations' units."""
        authorize_all(caller.principal, PAIRING_ADMINS)
        pairing = await self.pairings.load(pairing_id, "pairing")
        authorize_all(
            caller.principal,
            PAIRING_ADMINS,
            await self.unit_of(pairing.organ_org_id),
            await self.unit_of(pairing.community_org_id),
        )
        return await self.pairings.update(
            pairing_id, lambda p: p.end(reason), caller.metadata, kind="pairing"
        )

    # -- helpers --------------------------------------------------------------

    async def _authorize_for_org(self, caller: Caller, roles: set[Role], org_id: str) -> None:
        authorize(caller.principal, roles, await self.unit_of(org_id))

    async def _name_of(self, member: Member) -> str:
        return await self.vault.show(member.id, member.name_ciphertext)

    async def _member_in_scope(self, caller: Caller, roles: set[Role], member_id: str) -> Member:
        """The member, once the caller holds a role (checked before anything is read) and
        works for the member's organization's unit."""
        authorize_all(caller.principal, roles)
        member = await self.members.load(member_id, "member")
        await self._authorize_for_org(caller, roles, member.org_id)
        return member

    async def _change_member(
        self, caller: Caller, member: Member, change: Callable[[Member], None]
    ) -> Member:
        """Apply ``change`` while the member is still in the organization the caller was
        authorized for: a version conflict reloads the member, and one moved meanwhile
        is refused rather than changed on a stale authorization."""
        org_id = member.org_id

        def guarded(fresh: Member) -> None:
            if fresh.org_id != org_id:
                raise Conflict(f"member {fresh.id} moved to another organization; ask again")
            change(fresh)

        return await self.members.update(member.id, guarded, caller.metadata, loaded=member)

    async def unit_of(self, org_id: str) -> str:
        """The unit an org is bound to: fixed when it is founded, so kept once read."""
        unit = self._org_units.get(org_id)
        if unit is None:
            unit = (await self.orgs.load(org_id, "organization")).unit_code
            self._org_units[org_id] = unit
        return unit


def holder_of(held: GridPostAssigned | CommitteeMemberSeated) -> SealedName:
    """A post's or seat's holder's name as the event holds it (sealed, or in plaintext
    from before names were sealed)."""
    return SealedName(held.holder_person, held.holder_ciphertext, held.holder)


def _same_founding(org: PartyOrg, parent_id: str | None, name: str) -> bool:
    """Whether a standing org was founded as asked (a retry), not as another one."""
    return (org.parent_id, org.name, org.dissolved) == (parent_id, name.strip(), False)


def _parent_or_self(code: str) -> str:
    return parse_unit_code(code)[1] or code


def _still_bound_for(target: str, change: Callable[[Member], None]) -> Callable[[Member], None]:
    """``change``, refused when a reloaded member's transfer no longer goes to ``target``
    (the org the caller was authorized for)."""

    def guarded(fresh: Member) -> None:
        if fresh.transfer is None or fresh.transfer.to_org_id != target:
            raise Conflict(f"the transfer of member {fresh.id} changed meanwhile; ask again")
        change(fresh)

    return guarded


def _check_activity_id_for(caller: Caller, activity_id: str) -> None:
    """Card activity ids under :data:`SERVICE_ACTIVITY_PREFIX` are the ones volunteers'
    process manager derives for verified hours: nobody else may take one first."""
    reserved = (activity_id or "").strip().startswith(SERVICE_ACTIVITY_PREFIX)
    if reserved and not caller.principal.is_service:
        raise NotAllowed(
            f"card activity ids beginning with {SERVICE_ACTIVITY_PREFIX!r} are kept for "
            f"the volunteers service's verified hours; {caller.principal.subject} may not "
            "use one"
        )
