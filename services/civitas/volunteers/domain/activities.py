"""Service activities under the seed's brands: sign-ups, attendance, verified hours.

Nothing is deleted: a cancelled sign-up stays on the roster as cancelled, and a
declined claim keeps its reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from civitas.errors import InvalidInput, RuleViolation
from civitas.eventkit import Aggregate, DomainEvent, applies
from civitas.validation import required_text

CHECK_IN_EARLY = timedelta(hours=1)
NEVER = datetime.min.replace(tzinfo=UTC)
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
"""The years an activity may take place in."""


class Brand(enum.StrEnum):
    ELDERLY_DINING = "elderly_dining"  # 银发餐桌
    AFTER_SCHOOL = "after_school"  # 放学来吧
    HOME_CARE = "home_care"  # 居家无忧
    LEGAL_AID = "legal_aid"  # 春风驿站
    CULTURE_AND_SPORT = "culture_and_sport"  # 活力社区
    OTHER = "other"


class ActivityCreated(DomainEvent):
    brand: Brand
    title: str
    organizer: str
    community_code: str
    starts_at: datetime
    ends_at: datetime
    capacity: int
    skills: list[str]


class VolunteerSignedUp(DomainEvent):
    volunteer_id: str


class SignUpCancelled(DomainEvent):
    volunteer_id: str


class VolunteerCheckedIn(DomainEvent):
    volunteer_id: str
    at: datetime


class VolunteerCheckedOut(DomainEvent):
    volunteer_id: str
    at: datetime


class HoursVerified(DomainEvent):
    volunteer_id: str
    member_id: str | None
    tenths_of_hours: int
    verifier: str


class HoursDeclined(DomainEvent):
    volunteer_id: str
    reason: str


@dataclass
class Attendance:
    """One volunteer on an activity's roster."""

    cancelled: bool = False
    checked_in: datetime | None = None
    checked_out: datetime | None = None
    verified_tenths: int | None = None
    declined: str | None = None

    @property
    def attended_tenths(self) -> int:
        if self.checked_in is None or self.checked_out is None:
            return 0
        return int((self.checked_out - self.checked_in).total_seconds() // 360)


class Activity(Aggregate):
    category = "activity"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.brand = Brand.OTHER
        self.title = ""
        self.organizer = ""
        self.skills: list[str] = []
        self.community_code = ""
        self.starts_at = NEVER
        self.ends_at = NEVER
        self.capacity = 0
        self.roster: dict[str, Attendance] = {}

    @classmethod
    def create(
        cls,
        activity_id: str,
        brand: Brand,
        title: str,
        organizer: str,
        community_code: str,
        starts_at: datetime,
        ends_at: datetime,
        capacity: int,
        skills: list[str],
    ) -> Activity:
        if not EARLIEST <= starts_at < ends_at <= LATEST:
            raise InvalidInput(
                f"an activity ends after it starts, from {EARLIEST.year} to {LATEST.year - 1}"
            )
        if ends_at - starts_at > timedelta(hours=24):
            raise InvalidInput("an activity lasts at most 24 hours (longer ones are one a day)")
        if not 1 <= capacity <= 1000:
            raise InvalidInput(f"capacity is from 1 to 1000, not {capacity}")
        activity = cls(activity_id)
        activity._record(
            ActivityCreated(
                brand=brand,
                title=required_text("title", title, 200),
                organizer=required_text("organizer", organizer, 100),
                community_code=community_code,
                starts_at=starts_at,
                ends_at=ends_at,
                capacity=capacity,
                skills=sorted({required_text("skill", s, 50) for s in skills}),
            )
        )
        return activity

    def describes(self) -> tuple[object, ...]:
        """What the activity was created as: two activities made from one request or one
        import source must agree on it."""
        return (
            self.brand,
            self.title,
            self.organizer,
            self.community_code,
            self.starts_at,
            self.ends_at,
            self.capacity,
            tuple(self.skills),
        )

    @property
    def signed_up(self) -> int:
        return sum(not a.cancelled for a in self.roster.values())

    def sign_up(self, volunteer_id: str, suspended: bool, now: datetime) -> None:
        current = self.roster.get(volunteer_id)
        if current is not None and not current.cancelled:
            raise RuleViolation("the volunteer is signed up already")
        if suspended:
            raise RuleViolation("a suspended volunteer cannot sign up")
        if now >= self.ends_at:
            raise RuleViolation("the activity is over")
        if self.signed_up >= self.capacity:
            raise RuleViolation(f"the activity is full ({self.capacity} places)")
        self._record(VolunteerSignedUp(volunteer_id=volunteer_id))

    def cancel(self, volunteer_id: str) -> None:
        attendance = self._signed_up(volunteer_id)
        if attendance.checked_in is not None:
            raise RuleViolation("the volunteer has checked in; the sign-up stands")
        self._record(SignUpCancelled(volunteer_id=volunteer_id))

    def check_in(self, volunteer_id: str, at: datetime) -> None:
        attendance = self._signed_up(volunteer_id)
        if attendance.checked_in is not None:
            raise RuleViolation("the volunteer has checked in already")
        if not self.starts_at - CHECK_IN_EARLY <= at <= self.ends_at:
            raise RuleViolation("check-in is open from an hour before the start to the end")
        self._record(VolunteerCheckedIn(volunteer_id=volunteer_id, at=at))

    def check_out(self, volunteer_id: str, at: datetime) -> None:
        attendance = self._signed_up(volunteer_id)
        if attendance.checked_in is None:
            raise RuleViolation("the volunteer has not checked in")
        if attendance.checked_out is not None:
            raise RuleViolation("the volunteer has checked out already")
        if at < attendance.checked_in:
            raise InvalidInput("check-out cannot come before check-in")
        self._record(VolunteerCheckedOut(volunteer_id=volunteer_id, at=at))

    def verify_hours(
        self, volunteer_id: str, member_id: str | None, tenths_of_hours: int, verifier: str
    ) -> None:
        attendance = self._claimable(volunteer_id)
        if not 0 < tenths_of_hours <= attendance.attended_tenths:
            raise RuleViolation(
                f"verified hours must be more than 0 and at most the "
                f"{attendance.attended_tenths / 10:.1f} h attended, not {tenths_of_hours / 10:.1f}"
            )
        self._record(
            HoursVerified(
                volunteer_id=volunteer_id,
                member_id=member_id,
                tenths_of_hours=tenths_of_hours,
                verifier=required_text("verifier", verifier, 100),
            )
        )

    def decline_hours(self, volunteer_id: str, reason: str) -> None:
        self._claimable(volunteer_id)
        self._record(
            HoursDeclined(volunteer_id=volunteer_id, reason=required_text("reason", reason, 500))
        )

    def _signed_up(self, volunteer_id: str) -> Attendance:
        attendance = self.roster.get(volunteer_id)
        if attendance is None or attendance.cancelled:
            raise RuleViolation("the volunteer is not signed up for this activity")
        return attendance

    def _claimable(self, volunteer_id: str) -> Attendance:
        attendance = self._signed_up(volunteer_id)
        if attendance.checked_out is None:
            raise RuleViolation("hours are decided after the volunteer checks out")
        if attendance.verified_tenths is not None or attendance.declined is not None:
            raise RuleViolation("the hours of this attendance are decided already")
        return attendance

    @applies
    def _on_created(self, event: ActivityCreated) -> None:
        self.brand, self.title, self.community_code = event.brand, event.title, event.community_code
        self.organizer, self.skills = event.organizer, list(event.skills)
        self.starts_at, self.ends_at, self.capacity = event.starts_at, event.ends_at, event.capacity

    @applies
    def _on_signed_up(self, event: VolunteerSignedUp) -> None:
        self.roster[event.volunteer_id] = Attendance()

    @applies
    def _on_cancelled(self, event: SignUpCancelled) -> None:
        self.roster[event.volunteer_id].cancelled = True

    @applies
    def _on_checked_in(self, event: VolunteerCheckedIn) -> None:
        self.roster[event.volunteer_id].checked_in = event.at

    @applies
    def _on_checked_out(self, event: VolunteerCheckedOut) -> None:
        self.roster[event.volunteer_id].checked_out = event.at

    @applies
    def _on_verified(self, event: HoursVerified) -> None:
        self.roster[event.volunteer_id].verified_tenths = event.tenths_of_hours

    @applies
    def _on_declined(self, event: HoursDeclined) -> None:
        self.roster[event.volunteer_id].declined = event.reason
