"""Volunteers, their hours ledger and certificates.

A working party member who reports to a community gets a volunteer profile; its id
derives from the member's, so a replayed or duplicated event never makes two. A
member's profile follows the member's record in party_orgs: it belongs to the
community the member reports to, and its name shows to whom party_orgs shows the
member's (the member's units, as volunteers last heard them).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from civitas.errors import InvalidInput, RuleViolation
from civitas.eventkit import Aggregate, DomainEvent, applies, natural_id
from civitas.validation import required_text


def volunteer_id_for_member(member_id: str) -> str:
    """The volunteer profile of a party member."""
    return str(natural_id("volunteer-of-member", member_id))


class VolunteerRegistered(DomainEvent):
    community_code: str
    skills: list[str]
    member_id: str | None
    person_id: str  # whose key seals the name and phone (the member id for members)
    name_ciphertext: str
    phone_ciphertext: str
    # a member's: the units their record belongs to in party_orgs
    member_units: list[str] = Field(default_factory=list)


class VolunteerFollowedMember(DomainEvent):
    """A member's profile follows the member's record in party_orgs: the community it
    belongs to, and the units whose staff may see the name (the member's organization's
    unit and the community they report to)."""

    community_code: str
    member_units: list[str]


class VolunteerSuspended(DomainEvent):
    reason: str


class VolunteerReinstated(DomainEvent):
    pass


class HoursCredited(DomainEvent):
    activity_id: str
    tenths_of_hours: int


class CertificateIssued(DomainEvent):
    number: str
    total_tenths_of_hours: int
    issued_at: datetime


class Volunteer(Aggregate):
    category = "volunteer"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.community_code = ""
        self.skills: list[str] = []
        self.member_id: str | None = None
        self.person_id = ""
        self.name_ciphertext = ""
        self.member_units: tuple[str, ...] = ()
        self.suspended = False
        self.hours: dict[str, int] = {}
        self.certificates: list[CertificateIssued] = []

    @classmethod
    def register(
        cls,
        volunteer_id: str,
        community_code: str,
        skills: list[str],
        member_id: str | None,
        person_id: str,
        name_ciphertext: str,
        phone_ciphertext: str,
        member_units: list[str] | None = None,
    ) -> Volunteer:
        volunteer = cls(volunteer_id)
        volunteer._record(
            VolunteerRegistered(
                community_code=community_code,
                skills=sorted({required_text("skill", s, 50) for s in skills}),
                member_id=member_id,
                person_id=person_id,
                name_ciphertext=name_ciphertext,
                phone_ciphertext=phone_ciphertext,
                member_units=_units(member_units or []),
            )
        )
        return volunteer

    @property
    def record_units(self) -> tuple[str, ...]:
        """The units this volunteer's name belongs to (who may see it): a member's, the
        units of the member's record in party_orgs; anyone else's, their community. A
        member's profile made before it kept those units falls back to its community."""
        if self.member_id and self.member_units:
            return self.member_units
        return (self.community_code,)

    def follow_member(self, community_code: str, member_units: list[str]) -> None:
        """Move a member's profile to where the member's record now is (no change: no
        event, so a redelivered event records nothing)."""
        if self.member_id is None:
            raise RuleViolation("only a party member's volunteer profile follows a member")
        units = _units(member_units)
        if not units:
            raise InvalidInput("a member's record belongs to at least one unit")
        if (community_code, tuple(units)) != (self.community_code, self.member_units):
            self._record(VolunteerFollowedMember(community_code=community_code, member_units=units))

    @property
    def total_tenths(self) -> int:
        """Verified hours, in tenths, over every activity."""
        return sum(self.hours.values())

    def suspend(self, reason: str) -> None:
        if self.suspended:
            raise RuleViolation("the volunteer is suspended already")
        self._record(VolunteerSuspended(reason=required_text("reason", reason, 500)))

    def reinstate(self) -> None:
        if not self.suspended:
            raise RuleViolation("the volunteer is not suspended")
        self._record(VolunteerReinstated())

    def credit_hours(self, activity_id: str, tenths_of_hours: int) -> None:
        """Add an activity's verified hours to the ledger (once per activity)."""
        if activity_id in self.hours:
            return
        if tenths_of_hours <= 0:
            raise InvalidInput("credited hours must be positive")
        self._record(HoursCredited(activity_id=activity_id, tenths_of_hours=tenths_of_hours))

    def check_can_certify(self) -> None:
        """Raise unless a new certificate would state something new."""
        if not self.hours:
            raise RuleViolation("no verified hours to certify yet")
        if self.certificates and self.certificates[-1].total_tenths_of_hours == self.total_tenths:
            raise RuleViolation(
                f"certificate {self.certificates[-1].number} states this total already"
            )

    def issue_certificate(self, number: str, now: datetime) -> None:
        """A numbered certificate stating the verified total."""
        self.check_can_certify()
        self._record(
            CertificateIssued(number=number, total_tenths_of_hours=self.total_tenths, issued_at=now)
        )

    @applies
    def _on_registered(self, event: VolunteerRegistered) -> None:
        self.community_code, self.skills = event.community_code, list(event.skills)
        self.member_id, self.name_ciphertext = event.member_id, event.name_ciphertext
        self.person_id, self.member_units = event.person_id, tuple(event.member_units)

    @applies
    def _on_followed_member(self, event: VolunteerFollowedMember) -> None:
        self.community_code, self.member_units = event.community_code, tuple(event.member_units)

    @applies
    def _on_suspended(self, event: VolunteerSuspended) -> None:
        self.suspended = True

    @applies
    def _on_reinstated(self, event: VolunteerReinstated) -> None:
        self.suspended = False

    @applies
    def _on_credited(self, event: HoursCredited) -> None:
        self.hours[event.activity_id] = event.tenths_of_hours

    @applies
    def _on_certificate(self, event: CertificateIssued) -> None:
        self.certificates.append(event)


def _units(codes: list[str]) -> list[str]:
    """Unit codes without blanks or repeats, in their order."""
    return list(dict.fromkeys(code for code in codes if code))


class CertificateNumbered(DomainEvent):
    number: str
    volunteer_id: str
    total_tenths_of_hours: int


class CertificateBook(Aggregate):
    """Hands out certificate numbers of one year, in order (its id is the year). The
    same volunteer and total get the same number again, so a retry uses none up."""

    category = "certificate_book"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.given: dict[tuple[str, int], str] = {}

    def number_for(self, volunteer_id: str, total_tenths: int) -> str:
        known = self.given.get((volunteer_id, total_tenths))
        if known is not None:
            return known
        number = f"QH-VOL-{self.id}-{len(self.given) + 1:06d}"
        self._record(
            CertificateNumbered(
                number=number, volunteer_id=volunteer_id, total_tenths_of_hours=total_tenths
            )
        )
        return number

    @applies
    def _on_numbered(self, event: CertificateNumbered) -> None:
        self.given[(event.volunteer_id, event.total_tenths_of_hours)] = event.number
