"""volunteers commands: authorize against the community, load, one domain call, save."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from civitas.chassis.auth import Caller, Principal, Role, authorize
from civitas.chassis.requests import id_for
from civitas.errors import AlreadyExists, InvalidInput, RuleViolation
from civitas.eventkit import (
    Clock,
    EventStore,
    Repository,
    natural_id,
)
from civitas.eventkit.ids import new_uuid
from civitas.eventkit.personal import PersonalDataVault
from civitas.geography import checked_community
from civitas.validation import required_text

from .domain.activities import Activity, Brand
from .domain.volunteers import CertificateBook, Volunteer, volunteer_id_for_member
from .members import MemberInfo, PartyMembers

R = Role
COORDINATORS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF, R.VOLUNTEER_COORDINATOR}
ATTENDANCE = COORDINATORS | {R.GRID_WORKER}
IMPORTERS = {R.DISTRICT_ADMIN}
PROCESS = Principal("volunteers-process", frozenset({R.SERVICE}), ("QH",))
_PHONE = re.compile(r"\+?[0-9][0-9 -]{4,19}")


@dataclass(frozen=True, slots=True)
class PastAttendance:
    """One volunteer's attendance of a past activity, as an earlier system recorded it."""

    volunteer_id: str
    checked_in_at: datetime
    checked_out_at: datetime
    verified_tenths: int | None = None
    declined_reason: str | None = None

    def credit(self, activity_id: str) -> Callable[[Volunteer], None]:
        """The ledger entry for this attendance's verified hours."""
        return lambda volunteer: volunteer.credit_hours(activity_id, self.verified_tenths or 0)

    def replay_onto(self, activity: Activity, volunteer: Volunteer, verifier: str) -> None:
        if bool(self.verified_tenths) == bool(self.declined_reason):
            raise InvalidInput("an attendance has either verified hours or a decline reason")
        activity.sign_up(volunteer.id, volunteer.suspended, activity.starts_at)
        activity.check_in(volunteer.id, self.checked_in_at)
        activity.check_out(volunteer.id, self.checked_out_at)
        if self.verified_tenths:
            activity.verify_hours(volunteer.id, volunteer.member_id, self.verified_tenths, verifier)
        else:
            activity.decline_hours(volunteer.id, self.declined_reason or "")


class Volunteers:
    """The volunteers application service."""

    def __init__(
        self, store: EventStore, vault: PersonalDataVault, clock: Clock, members: PartyMembers
    ) -> None:
        self.volunteers = Repository(store, Volunteer)
        self.activities = Repository(store, Activity)
        self.books = Repository(store, CertificateBook)
        self.store = store
        self.vault = vault
        self.clock = clock
        self.members = members

    async def register(
        self,
        caller: Caller,
        name: str,
        phone: str,
        community_code: str,
        skills: list[str],
        member_id: str | None,
        request_id: str | None = None,
    ) -> Volunteer:
        """A volunteer; a party member's volunteer takes the member's name when none is
        given, and gets the id derived from the member's (registering again is a no-op).
        Anyone else's id derives from the request id when there is one."""
        authorize(caller.principal, COORDINATORS, checked_community(community_code))
        if not _PHONE.fullmatch(phone or ""):
            raise InvalidInput(f"phone {phone!r} is not a phone number")
        if member_id is not None:
            return await self._register_member(
                caller, name, phone, community_code, skills, member_id
            )
        person = await self.vault.person_for("volunteer", re.sub(r"[ -]", "", phone))
        name = required_text("name", name)
        volunteer = Volunteer.register(
            id_for("volunteer", request_id) or str(new_uuid()),
            community_code,
            skills,
            None,
            person,
            await self.vault.seal(person, name),
            await self.vault.seal(person, phone),
        )
        stored = await self.volunteers.create_or_fetch(volunteer, caller.metadata)
        if stored is not volunteer and not await self._same_registration(stored, volunteer, name):
            raise AlreadyExists(
                f"request_id {request_id} registered volunteer {stored.id} with other "
                "details; nothing was stored (use a new request_id)"
            )
        return stored

    async def _register_member(
        self,
        caller: Caller,
        name: str,
        phone: str,
        community_code: str,
        skills: list[str],
        member_id: str,
    ) -> Volunteer:
        member = await self._member(member_id)
        if community_code not in member.communities:
            raise RuleViolation(
                "a member volunteers in their residence community or "
                "their organization's, not in " + community_code
            )
        name = required_text("name", (name or "").strip() or member.name)
        volunteer = Volunteer.register(
            volunteer_id_for_member(member_id),
            community_code,
            skills,
            member_id,
            member_id,
            await self.vault.seal(member_id, name),
            await self.vault.seal(member_id, phone),
            member.units,
        )
        return await self.volunteers.create_or_fetch(volunteer, caller.metadata)

    async def follow_member(
        self, member_id: str, reported_to: str | None, correlation_id: str | None
    ) -> Volunteer | None:
        """Keep a member's volunteer profile in step with the member's record in
        party_orgs, as it is now. A working member who reports to a community gets a
        profile there (made once: its id derives from the member's); a profile moves
        to the community the member reports to; and it keeps the member's units, so
        that its name shows to whom party_orgs shows the member's. Redelivered events
        change nothing."""
        caller = Caller(PROCESS, correlation_id)
        existing = await self.volunteers.find(volunteer_id_for_member(member_id))
        if existing is not None:
            member = await self._member(member_id)
            community = (member.residence_community if reported_to else None) or (
                existing.community_code
            )
            return await self.volunteers.update(
                existing.id,
                lambda v: v.follow_member(community, member.units),
                caller.metadata,
                loaded=existing,
            )
        if reported_to is None:
            return None  # no profile, and no report to make one
        member = await self._member(member_id)
        volunteer = Volunteer.register(
            volunteer_id_for_member(member_id),
            member.residence_community or reported_to,
            [],
            member_id,
            member_id,
            await self.vault.seal(member_id, member.name),
            "",
            member.units,
        )
        return await self.volunteers.create_or_fetch(volunteer, caller.metadata)

    async def _member(self, member_id: str) -> MemberInfo:
        member = await self.members.member(member_id)
        if member is None:
            raise RuleViolation(f"party_orgs has no member {member_id}")
        return member

    async def suspend(self, caller: Caller, volunteer_id: str, reason: str) -> Volunteer:
        volunteer = await self._volunteer(caller, volunteer_id, COORDINATORS)
        return await self.volunteers.update(
            volunteer.id, lambda v: v.suspend(reason), caller.metadata, loaded=volunteer
        )

    async def reinstate(self, caller: Caller, volunteer_id: str) -> Volunteer:
        volunteer = await self._volunteer(caller, volunteer_id, COORDINATORS)
        return await self.volunteers.update(
            volunteer.id, lambda v: v.reinstate(), caller.metadata, loaded=volunteer
        )

    async def create_activity(
        self,
        caller: Caller,
        brand: Brand,
        title: str,
        organizer: str,
        community_code: str,
        starts_at: datetime,
        ends_at: datetime,
        capacity: int,
        skills: list[str],
        request_id: str | None = None,
    ) -> Activity:
        """A new activity, under an id derived from the request id when there is one: a
        retry after a crash finds the one it made."""
        authorize(caller.principal, COORDINATORS, checked_community(community_code))
        activity = Activity.create(
            id_for("activity", request_id) or str(new_uuid()),
            brand,
            title,
            organizer,
            community_code,
            starts_at,
            ends_at,
            capacity,
            skills,
        )
        stored = await self.activities.create_or_fetch(activity, caller.metadata)
        if stored.describes() != activity.describes():  # made before, by another request
            raise AlreadyExists(
                f"request_id {request_id} created activity {activity.id} with other "
                "details; nothing was stored (use a new request_id)"
            )
        return stored

    async def sign_up(self, caller: Caller, activity_id: str, volunteer_id: str) -> Activity:
        activity = await self._activity(caller, activity_id, ATTENDANCE)
        volunteer = await self.volunteers.load(volunteer_id, "volunteer", RuleViolation)
        now = self.clock.now()
        return await self.activities.update(
            activity.id,
            lambda a: a.sign_up(volunteer.id, volunteer.suspended, now),
            caller.metadata,
            loaded=activity,
        )

    async def cancel(self, caller: Caller, activity_id: str, volunteer_id: str) -> Activity:
        activity = await self._activity(caller, activity_id, ATTENDANCE)
        return await self.activities.update(
            activity.id, lambda a: a.cancel(volunteer_id), caller.metadata, loaded=activity
        )

    async def check_in(self, caller: Caller, activity_id: str, volunteer_id: str) -> Activity:
        activity = await self._activity(caller, activity_id, ATTENDANCE)
        now = self.clock.now()
        return await self.activities.update(
            activity.id, lambda a: a.check_in(volunteer_id, now), caller.metadata, loaded=activity
        )

    async def check_out(self, caller: Caller, activity_id: str, volunteer_id: str) -> Activity:
        activity = await self._activity(caller, activity_id, ATTENDANCE)
        now = self.clock.now()
        return await self.activities.update(
            activity.id, lambda a: a.check_out(volunteer_id, now), caller.metadata, loaded=activity
        )

    async def verify_hours(
        self, caller: Caller, activity_id: str, volunteer_id: str, tenths_of_hours: int
    ) -> Activity:
        """Verify on the activity, then credit the volunteer's ledger with the verified
        amount. A retry after a crash between the two completes the credit (whatever it
        asks for), then refuses a different amount."""
        activity = await self._activity(caller, activity_id, COORDINATORS)
        volunteer = await self.volunteers.load(volunteer_id, "volunteer", RuleViolation)
        attendance = activity.roster.get(volunteer_id)
        already = attendance.verified_tenths if attendance else None
        if already is None:
            activity = await self.activities.update(
                activity.id,
                lambda a: a.verify_hours(
                    volunteer_id, volunteer.member_id, tenths_of_hours, caller.principal.subject
                ),
                caller.metadata,
                loaded=activity,
            )
            already = tenths_of_hours
        await self.volunteers.update(
            volunteer.id,
            lambda v: v.credit_hours(activity_id, already),
            caller.metadata,
            loaded=volunteer,
        )
        if already != tenths_of_hours:
            raise RuleViolation(f"the hours were verified as {already / 10:.1f} h already")
        return activity

    async def decline_hours(
        self, caller: Caller, activity_id: str, volunteer_id: str, reason: str
    ) -> Activity:
        activity = await self._activity(caller, activity_id, COORDINATORS)
        return await self.activities.update(
            activity.id,
            lambda a: a.decline_hours(volunteer_id, reason),
            caller.metadata,
            loaded=activity,
        )

    async def issue_certificate(self, caller: Caller, volunteer_id: str) -> Volunteer:
        volunteer = await self._volunteer(caller, volunteer_id, COORDINATORS)
        volunteer.check_can_certify()  # before a number is taken
        now = self.clock.now()
        number = await self._certificate_number(str(now.year), volunteer, caller)
        return await self.volunteers.update(
            volunteer.id,
            lambda v: v.issue_certificate(number, now),
            caller.metadata,
            loaded=volunteer,
        )

    async def import_activity(
        self,
        caller: Caller,
        brand: Brand,
        title: str,
        organizer: str,
        community_code: str,
        starts_at: datetime,
        ends_at: datetime,
        capacity: int,
        skills: list[str],
        attendance: list[PastAttendance],
        source_id: str | None = None,
        request_id: str | None = None,
    ) -> Activity:
        """Record a past activity with its roster: the same domain steps, with the record's
        times; then credit each verified volunteer's ledger. The activity's id derives
        from the record's source id (else from the request id): importing the same record
        again completes the credits and returns it, another record under the same key is
        refused."""
        authorize(caller.principal, IMPORTERS, checked_community(community_code))
        if ends_at > self.clock.now():
            raise InvalidInput("only activities that have ended can be imported")
        if source_id:
            key = f"source_id {source_id!r}"
            activity_id = str(natural_id("imported-activity", source_id))
        else:
            key = f"request_id {request_id}"
            activity_id = id_for("imported-activity", request_id) or str(new_uuid())
        activity = Activity.create(
            activity_id,
            brand,
            title,
            organizer,
            community_code,
            starts_at,
            ends_at,
            capacity,
            skills,
        )
        await self._replay_attendance(activity, attendance, caller)
        activity = await self._import_once(activity, caller, key)
        for record in attendance:
            if record.verified_tenths:
                await self.volunteers.update(
                    record.volunteer_id, record.credit(activity.id), caller.metadata
                )
        return activity

    async def _replay_attendance(
        self, activity: Activity, attendance: list[PastAttendance], caller: Caller
    ) -> None:
        volunteers: dict[str, Volunteer] = {}
        for record in attendance:
            volunteer = volunteers.get(record.volunteer_id) or await self.volunteers.load(
                record.volunteer_id, "volunteer", RuleViolation
            )
            volunteers[volunteer.id] = volunteer
            record.replay_onto(activity, volunteer, caller.principal.subject)

    async def _import_once(self, imported: Activity, caller: Caller, key: str) -> Activity:
        """Store an imported activity once: the one stored under its id already must be
        the same record (the activity and every attendance), else the key was reused."""
        found = await self.activities.find(imported.id)
        existing = found or await self.activities.create_or_fetch(imported, caller.metadata)
        same = existing.describes() == imported.describes() and existing.roster == imported.roster
        if not same:
            raise AlreadyExists(
                f"{key} was imported as another activity or roster (activity "
                f"{existing.id}); nothing was stored"
            )
        return existing

    async def get_volunteer(self, volunteer_id: str) -> Volunteer:
        return await self.volunteers.load(volunteer_id, "volunteer")

    async def get_activity(self, activity_id: str) -> Activity:
        return await self.activities.load(activity_id, "activity")

    # -- helpers ----------------------------------------------------------------------

    async def _certificate_number(self, year: str, volunteer: Volunteer, caller: Caller) -> str:
        numbers: list[str] = []

        def take(book: CertificateBook) -> None:
            numbers[:] = [book.number_for(volunteer.id, volunteer.total_tenths)]

        if await self.books.find(year) is None:
            book = CertificateBook(year)
            take(book)
            if await self.books.create_or_fetch(book, caller.metadata) is book:
                return numbers[0]  # else someone opened this year's book first
        await self.books.update(year, take, caller.metadata)  # takes turns in this process
        return numbers[0]

    async def _same_registration(self, stored: Volunteer, new: Volunteer, name: str) -> bool:
        """Whether two registrations under one id register the same person alike."""
        fields = (stored.community_code, stored.skills, stored.member_id, stored.person_id)
        if fields != (new.community_code, new.skills, new.member_id, new.person_id):
            return False
        return await self.vault.show(stored.person_id, stored.name_ciphertext) == name

    async def _volunteer(self, caller: Caller, volunteer_id: str, roles: set[Role]) -> Volunteer:
        volunteer = await self.volunteers.load(volunteer_id, "volunteer")
        authorize(caller.principal, roles, volunteer.community_code)
        return volunteer

    async def _activity(self, caller: Caller, activity_id: str, roles: set[Role]) -> Activity:
        activity = await self.activities.load(activity_id, "activity")
        authorize(caller.principal, roles, activity.community_code)
        return activity
