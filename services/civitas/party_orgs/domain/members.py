"""Party members: their org, transfers, reporting to a community, card and appraisals.

The member's name is personal data: events carry only its ciphertext, encrypted
with the member's own key (see :mod:`civitas.eventkit.personal`).
"""

from __future__ import annotations

import calendar
import enum
from datetime import UTC, datetime
from typing import Any

from civitas.errors import AlreadyExists, InvalidInput, RuleViolation
from civitas.eventkit import Aggregate, DomainEvent, applies, natural_id
from civitas.validation import required_text as check_text

TRANSFER_LETTER_MONTHS = 3
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""The earliest a card records anything (appraisals too start in 2000)."""


class CardActivityKind(enum.StrEnum):
    VOLUNTEER_SERVICE = "volunteer_service"
    MEETING = "meeting"
    COMMUNITY_SERVICE = "community_service"


class AppraisalRating(enum.StrEnum):
    EXCELLENT = "excellent"  # 优秀
    COMPETENT = "competent"  # 合格
    BASICALLY_COMPETENT = "basically_competent"  # 基本合格
    INCOMPETENT = "incompetent"  # 不合格


def member_id_for(member_number: str) -> str:
    """A member's id, derived from the number on their membership record."""
    return str(natural_id("member", member_number))


def add_months(moment: datetime, months: int) -> datetime:
    """The same day ``months`` later (the month's last day where that day is missing)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


class MemberAdmitted(DomainEvent):
    member_number: str
    name_ciphertext: str
    org_id: str
    working: bool
    employer: str | None


class TransferStarted(DomainEvent):
    from_org_id: str
    to_org_id: str
    letter_expires_at: datetime


class TransferReceived(DomainEvent):
    from_org_id: str
    to_org_id: str


class TransferCancelled(DomainEvent):
    to_org_id: str
    reason: str


class ReportedToCommunity(DomainEvent):
    community_code: str


class CardActivityRecorded(DomainEvent):
    activity_id: str
    kind: CardActivityKind
    description: str
    tenths_of_hours: int
    occurred_at: datetime


class ResidentFeedbackRecorded(DomainEvent):
    feedback_id: str
    rating: int
    comment: str
    recorded_at: datetime


class AppraisalRated(DomainEvent):
    year: int
    rating: AppraisalRating


class Member(Aggregate):
    """A party member; the id derives from the member number."""

    category = "member"
    snapshot_every = 100
    snapshot_version = 2  # v2 keeps the last received transfer

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.member_number = ""
        self.name_ciphertext = ""
        self.org_id = ""
        self.working = False
        self.employer: str | None = None
        self.residence_community: str | None = None
        self.transfer: TransferStarted | None = None
        self.last_transfer: TransferReceived | None = None
        self.activities: dict[str, CardActivityRecorded] = {}
        self.feedback: dict[str, ResidentFeedbackRecorded] = {}
        self.appraisals: dict[int, AppraisalRating] = {}

    @classmethod
    def admit(
        cls,
        member_number: str,
        name_ciphertext: str,
        org_id: str,
        working: bool,
        employer: str | None,
    ) -> Member:
        member_number = check_text("member number", member_number, 40)
        if working and not (employer or "").strip():
            raise InvalidInput("a working member names their employer")
        member = cls(member_id_for(member_number))
        member._record(
            MemberAdmitted(
                member_number=member_number,
                name_ciphertext=name_ciphertext,
                org_id=org_id,
                working=working,
                employer=(employer or "").strip() or None,
            )
        )
        return member

    def start_transfer(self, to_org_id: str, now: datetime) -> None:
        if self.transfer is not None:
            raise RuleViolation(f"a transfer to {self.transfer.to_org_id} is under way already")
        if to_org_id == self.org_id:
            raise RuleViolation("the member belongs to that organization already")
        self._record(
            TransferStarted(
                from_org_id=self.org_id,
                to_org_id=to_org_id,
                letter_expires_at=add_months(now, TRANSFER_LETTER_MONTHS),
            )
        )

    def receive_transfer(self, now: datetime) -> None:
        transfer = self._check_transfer_pending()
        if now > transfer.letter_expires_at:
            raise RuleViolation(
                f"the transfer letter expired on {transfer.letter_expires_at.date().isoformat()}"
            )
        self._record(
            TransferReceived(from_org_id=transfer.from_org_id, to_org_id=transfer.to_org_id)
        )

    def cancel_transfer(self, reason: str) -> None:
        transfer = self._check_transfer_pending()
        self._record(
            TransferCancelled(
                to_org_id=transfer.to_org_id, reason=check_text("reason", reason, 500)
            )
        )

    def report_to_community(self, community_code: str) -> None:
        if not self.working:
            raise RuleViolation("only a working member (在职党员) reports to a residence community")
        if community_code != self.residence_community:
            self._record(ReportedToCommunity(community_code=community_code))

    def record_activity(
        self,
        activity_id: str,
        kind: CardActivityKind,
        description: str,
        tenths_of_hours: int,
        occurred_at: datetime,
        now: datetime,
    ) -> None:
        """Record an activity under the id its writer gave it. The same id again with the
        same content is a redelivery and changes nothing; with other content it is
        refused (:class:`AlreadyExists`), so an id always means one activity."""
        activity_id = check_text("activity id", activity_id, 100)
        description = check_text("description", description, 500)
        known = self.activities.get(activity_id)
        if known is not None:
            recorded = (known.kind, known.description, known.tenths_of_hours, known.occurred_at)
            if recorded != (kind, description, tenths_of_hours, occurred_at):
                raise AlreadyExists(
                    f"card activity id {activity_id!r} was recorded with other content; "
                    "nothing was recorded (give a new activity a new id)"
                )
            return  # delivered again: the card holds it already
        if not 0 <= tenths_of_hours <= 240:
            raise InvalidInput(f"hours must be between 0 and 24, not {tenths_of_hours / 10}")
        if not EARLIEST <= occurred_at <= now:
            raise InvalidInput(
                f"an activity on the card happened from {EARLIEST.year} until now, "
                f"not at {occurred_at.isoformat()}"
            )
        self._record(
            CardActivityRecorded(
                activity_id=activity_id,
                kind=kind,
                description=description,
                tenths_of_hours=tenths_of_hours,
                occurred_at=occurred_at,
            )
        )

    def record_feedback(self, feedback_id: str, rating: int, comment: str, now: datetime) -> None:
        """Record a resident's feedback under the id its writer gave it: the same id again
        with the same rating and comment changes nothing, with others it is refused."""
        feedback_id = check_text("feedback id", feedback_id, 100)
        comment = (comment or "").strip()[:1000]
        known = self.feedback.get(feedback_id)
        if known is not None:
            if (known.rating, known.comment) != (rating, comment):
                raise AlreadyExists(
                    f"feedback id {feedback_id!r} was recorded with another rating or "
                    "comment; nothing was recorded (give new feedback a new id)"
                )
            return
        if not 1 <= rating <= 5:
            raise InvalidInput(f"a rating is from 1 to 5, not {rating}")
        self._record(
            ResidentFeedbackRecorded(
                feedback_id=feedback_id, rating=rating, comment=comment, recorded_at=now
            )
        )

    def rate_appraisal(self, year: int, rating: AppraisalRating, now: datetime) -> None:
        if not 2000 <= year <= now.year:
            raise InvalidInput(f"an appraisal is for a past or the current year, not {year}")
        if self.appraisals.get(year) is not rating:
            self._record(AppraisalRated(year=year, rating=rating))

    def _check_transfer_pending(self) -> TransferStarted:
        if self.transfer is None:
            raise RuleViolation("no transfer is under way")
        return self.transfer

    @applies
    def _on_member_admitted(self, event: MemberAdmitted) -> None:
        self.member_number, self.name_ciphertext = event.member_number, event.name_ciphertext
        self.org_id, self.working, self.employer = event.org_id, event.working, event.employer

    @applies
    def _on_transfer_started(self, event: TransferStarted) -> None:
        self.transfer = event

    @applies
    def _on_transfer_received(self, event: TransferReceived) -> None:
        self.org_id, self.transfer, self.last_transfer = event.to_org_id, None, event

    @applies
    def _on_transfer_cancelled(self, event: TransferCancelled) -> None:
        self.transfer = None

    @applies
    def _on_reported_to_community(self, event: ReportedToCommunity) -> None:
        self.residence_community = event.community_code

    @applies
    def _on_card_activity_recorded(self, event: CardActivityRecorded) -> None:
        self.activities[event.activity_id] = event

    @applies
    def _on_resident_feedback_recorded(self, event: ResidentFeedbackRecorded) -> None:
        self.feedback[event.feedback_id] = event

    @applies
    def _on_appraisal_rated(self, event: AppraisalRated) -> None:
        self.appraisals[event.year] = event.rating

    def snapshot_state(self) -> dict[str, Any]:
        return {
            "member_number": self.member_number,
            "name_ciphertext": self.name_ciphertext,
            "org_id": self.org_id,
            "working": self.working,
            "employer": self.employer,
            "residence_community": self.residence_community,
            "transfer": self.transfer.to_data() if self.transfer else None,
            "last_transfer": self.last_transfer.to_data() if self.last_transfer else None,
            "activities": [a.to_data() for a in self.activities.values()],
            "feedback": [f.to_data() for f in self.feedback.values()],
            "appraisals": {str(y): r.value for y, r in self.appraisals.items()},
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self.member_number, self.name_ciphertext = state["member_number"], state["name_ciphertext"]
        self.org_id, self.working, self.employer = (
            state["org_id"],
            state["working"],
            state["employer"],
        )
        self.residence_community = state["residence_community"]
        transfer = state["transfer"]
        self.transfer = TransferStarted.model_validate(transfer) if transfer else None
        last = state.get("last_transfer")
        self.last_transfer = TransferReceived.model_validate(last) if last else None
        activities = (CardActivityRecorded.model_validate(a) for a in state["activities"])
        self.activities = {a.activity_id: a for a in activities}
        feedback = (ResidentFeedbackRecorded.model_validate(f) for f in state["feedback"])
        self.feedback = {f.feedback_id: f for f in feedback}
        self.appraisals = {int(y): AppraisalRating(r) for y, r in state["appraisals"].items()}
