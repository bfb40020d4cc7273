"""A resident's request, from registration to follow-up.

registered → classified → (answered on the spot → resolved) or (filed → dispatched
to a handling unit → accepted, or returned with a reason → in progress, with
notes; disputes go through mediation → agreement or failure) → resolved →
follow-up with the resident's satisfaction → closed, or reopened when the
resident is not satisfied. Also: reassign, merge a duplicate into an original,
reject as out of scope, withdrawal by the resident, and supervision notices (督办)
when a deadline passes, one per breached deadline.

While in progress or in mediation, the handler may ask the community's special
fund for money (a saga with funds): the request names the expenditure funds will
open for it, and the case records the outcome, paid or refused, when funds
reports it. One request waits at a time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from civitas.errors import InvalidInput, RuleViolation
from civitas.eventkit import (
    UNSEALED,
    Aggregate,
    DomainEvent,
    SealedName,
    applies,
    registry,
)
from civitas.sealing import split_address
from civitas.validation import required_text

from ..lifecycle import FINAL, OPEN, UNDISPATCHED, Status, status_after
from .values import expenditure_id_for, funding_amount, payee_account


class Channel(enum.StrEnum):
    HOTLINE_12345 = "hotline_12345"
    LIVELIHOOD_STATION = "livelihood_station"  # 民生工作站
    SERVICE_CENTRE_WINDOW = "service_centre_window"
    GRID_PATROL = "grid_patrol"
    ONLINE = "online"


class Urgency(enum.StrEnum):
    URGENT = "urgent"
    NORMAL = "normal"
    LOW = "low"


LONG_TEXT = 2000  # descriptions, notes, reasons


class FundingStatus(enum.StrEnum):
    PENDING = "pending"
    GRANTED = "granted"  # paid out to the payee
    REFUSED = "refused"


@dataclass
class FundingRequest:
    """Money a case asked for, and what became of it."""

    expenditure_id: str
    amount_fen: int
    payee_account: str
    purpose: str
    status: FundingStatus = FundingStatus.PENDING
    reason: str = ""


class Deadline(enum.StrEnum):
    DISPATCH = "dispatch"
    RESOLUTION = "resolution"


@dataclass(frozen=True)
class DeadlinePolicy:
    """How long dispatch and resolution may take, by urgency (configurable)."""

    dispatch: dict[Urgency, timedelta]
    resolution: dict[Urgency, timedelta]

    @classmethod
    def default(cls) -> DeadlinePolicy:
        return cls(
            dispatch={
                Urgency.URGENT: timedelta(hours=1),
                Urgency.NORMAL: timedelta(hours=2),
                Urgency.LOW: timedelta(hours=24),
            },
            resolution={
                Urgency.URGENT: timedelta(hours=24),
                Urgency.NORMAL: timedelta(days=7),
                Urgency.LOW: timedelta(days=15),
            },
        )

    @classmethod
    def parse(cls, text: str) -> DeadlinePolicy:
        """``urgent=1h/24h,normal=2h/7d,low=24h/15d``: dispatch/resolution per urgency
        (units m, h, d); urgencies left out keep their defaults."""
        policy = cls.default()
        units = {"m": "minutes", "h": "hours", "d": "days"}
        for part in filter(None, (p.strip() for p in text.split(","))):
            try:
                name, spans = part.split("=")
                urgency = Urgency(name.strip())
                dispatch, resolution = (
                    timedelta(**{units[span.strip()[-1]]: float(span.strip()[:-1])})
                    for span in spans.split("/")
                )
            except (ValueError, KeyError):
                raise ValueError(
                    f"deadline {part!r} is not like 'normal=2h/7d' (units m, h, d)"
                ) from None
            policy.dispatch[urgency], policy.resolution[urgency] = dispatch, resolution
        return policy

    def due(self, registered_at: datetime, urgency: Urgency) -> tuple[datetime, datetime]:
        return registered_at + self.dispatch[urgency], registered_at + self.resolution[urgency]


class CaseRegistered(DomainEvent):
    """``address`` is the clear part the grid needs; the rest of it and the description
    are sealed under the resident's key (``civitas.sealing``). Schema 1 kept the whole
    address and the description in plaintext: its upcaster cuts the address, and
    ``description`` and ``address_rest`` carry that plaintext."""

    schema_version = 2
    channel: Channel
    community_code: str
    address: str
    address_rest_ciphertext: str | None
    description_ciphertext: str | None
    urgency: Urgency
    resident_id: str
    resident_name_ciphertext: str
    resident_phone_ciphertext: str
    registered_at: datetime
    dispatch_due: datetime
    resolution_due: datetime
    # When the case's id derives from a key the caller chose (a request id, an import's
    # source id): a digest of the request, sealed under the resident's key as it covers
    # their name and phone, so that a later request under the same key is compared with
    # it and an erasure erases it too.
    request_digest_ciphertext: str | None = None
    description: str | None = None
    address_rest: str | None = None


def _registered_v1(data: dict[str, Any]) -> dict[str, Any]:
    data["address"], rest = split_address(data["address"])
    data["address_rest"], data["address_rest_ciphertext"] = rest or None, None
    data["description_ciphertext"] = None
    return data


registry.upcaster("CaseRegistered", 1)(_registered_v1)


class CaseClassified(DomainEvent):
    category: str
    urgency: Urgency
    dispatch_due: datetime
    resolution_due: datetime


class CaseAnsweredOnSpot(DomainEvent):
    answer: str


class CaseFiled(DomainEvent):
    pass


# The names of the people a case passes through (its handler, who accepted it, its
# mediator) are sealed under their person ids, as residents' are: forgetting a person
# erases them. Events of schema 1 carried the plain name (the optional last field);
# their upcasters give them a person id made from that name.


def _unsealed(data: dict[str, Any], name: str) -> dict[str, Any]:
    data[f"{name}_person"] = UNSEALED
    data[f"{name}_ciphertext"] = None
    return data


class CaseDispatched(DomainEvent):
    schema_version = 2
    grid_code: str
    grid_branch_id: str | None
    handler_person: str
    handler_ciphertext: str | None
    dispatched_at: datetime
    handler: str | None = None


class CaseAccepted(DomainEvent):
    schema_version = 2
    by_person: str
    by_ciphertext: str | None
    by: str | None = None


class CaseReturned(DomainEvent):
    reason: str


class CaseReassigned(DomainEvent):
    schema_version = 2
    grid_code: str
    grid_branch_id: str | None
    handler_person: str
    handler_ciphertext: str | None
    reason: str
    handler: str | None = None


# Notes and mediation records are sealed under the resident's key; schema 1 kept them
# in plaintext, which the optional last field carries.


def _text_v1(data: dict[str, Any], name: str) -> dict[str, Any]:
    data[f"{name}_ciphertext"] = None
    return data


class ProgressNoted(DomainEvent):
    schema_version = 2
    note_ciphertext: str | None
    note: str | None = None


class MediationOpened(DomainEvent):
    schema_version = 2
    mediator_person: str
    mediator_ciphertext: str | None
    mediator: str | None = None


registry.upcaster("CaseDispatched", 1)(lambda data: _unsealed(data, "handler"))
registry.upcaster("CaseReassigned", 1)(lambda data: _unsealed(data, "handler"))
registry.upcaster("CaseAccepted", 1)(lambda data: _unsealed(data, "by"))
registry.upcaster("MediationOpened", 1)(lambda data: _unsealed(data, "mediator"))


class MediationSessionHeld(DomainEvent):
    schema_version = 2
    summary_ciphertext: str | None
    summary: str | None = None


class MediationConcluded(DomainEvent):
    schema_version = 2
    agreed: bool
    terms_ciphertext: str | None
    terms: str | None = None


registry.upcaster("ProgressNoted", 1)(lambda data: _text_v1(data, "note"))
registry.upcaster("MediationSessionHeld", 1)(lambda data: _text_v1(data, "summary"))
registry.upcaster("MediationConcluded", 1)(lambda data: _text_v1(data, "terms"))


class CaseResolved(DomainEvent):
    resolution: str
    resolved_at: datetime


class CaseFollowedUp(DomainEvent):
    satisfaction: int
    comment: str


class CaseClosed(DomainEvent):
    closed_at: datetime


class CaseReopened(DomainEvent):
    reason: str
    resolution_due: datetime
    # Set when the case was answered on the spot and never had a handler: it goes back
    # to be dispatched, with a new dispatch deadline.
    dispatch_due: datetime | None = None


class CaseMerged(DomainEvent):
    into_case_id: str


class CaseRejected(DomainEvent):
    reason: str


class CaseWithdrawn(DomainEvent):
    reason: str


class SupervisionNoticeIssued(DomainEvent):
    deadline: Deadline
    due: datetime
    issued_at: datetime


class CaseFundingRequested(DomainEvent):
    expenditure_id: str
    community_code: str
    amount_fen: int
    payee_account: str
    purpose: str
    evidence: str


class CaseFundingGranted(DomainEvent):
    expenditure_id: str
    amount_fen: int


class CaseFundingRefused(DomainEvent):
    expenditure_id: str
    reason: str


def _sealed_text(label: str, ciphertext: str) -> str:
    """Text the application sealed, having checked its plaintext (at most
    :data:`LONG_TEXT` characters): the domain sees only that it is there."""
    if not (ciphertext or "").strip():
        raise InvalidInput(f"{label} is required")
    return ciphertext


class Case(Aggregate):
    """One resident's request."""

    category = "case"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.status = Status.REGISTERED
        self.channel = Channel.ONLINE
        self.community_code = ""
        self.address = ""  # the clear part: down to the building
        self.address_rest: SealedName | None = None
        self.description: SealedName | None = None
        self.urgency = Urgency.NORMAL
        self.kind: str | None = None
        self.resident_id = ""
        self.resident_name_ciphertext = ""
        self.resident_phone_ciphertext = ""
        self.request_digest: str | None = None  # sealed; see CaseRegistered
        self.registered_at: datetime | None = None
        self.dispatch_due: datetime | None = None
        self.resolution_due: datetime | None = None
        self.dispatched_at: datetime | None = None
        self.resolved_at: datetime | None = None
        self.grid_code: str | None = None
        self.handler: SealedName | None = None
        self.mediator: SealedName | None = None
        self.satisfaction: int | None = None
        self.notices: set[Deadline] = set()
        self.merged_into: str | None = None
        self.funding: dict[str, FundingRequest] = {}

    # -- commands ----------------------------------------------------------------

    @classmethod
    def register(
        cls,
        case_id: str,
        channel: Channel,
        community_code: str,
        address: str,
        description: str,
        urgency: Urgency,
        resident_id: str,
        name_ciphertext: str,
        phone_ciphertext: str,
        now: datetime,
        policy: DeadlinePolicy,
        request_digest: str | None = None,
        address_rest: str | None = None,
    ) -> Case:
        """``address`` is the clear part (:func:`civitas.sealing.split_address`);
        ``address_rest`` and ``description`` are ciphertext under the resident's key."""
        dispatch_due, resolution_due = policy.due(now, urgency)
        case = cls(case_id)
        case._record(
            CaseRegistered(
                channel=channel,
                community_code=community_code,
                address=required_text("address", address, 300),
                address_rest_ciphertext=address_rest,
                description_ciphertext=_sealed_text("description", description),
                urgency=urgency,
                resident_id=resident_id,
                resident_name_ciphertext=name_ciphertext,
                resident_phone_ciphertext=phone_ciphertext,
                registered_at=now,
                dispatch_due=dispatch_due,
                resolution_due=resolution_due,
                request_digest_ciphertext=request_digest,
            )
        )
        return case

    def classify(self, kind: str, urgency: Urgency, policy: DeadlinePolicy) -> None:
        self._check_status(Status.REGISTERED, Status.CLASSIFIED, doing="classify")
        assert self.registered_at is not None
        dispatch_due, resolution_due = policy.due(self.registered_at, urgency)
        self._record(
            CaseClassified(
                category=required_text("category", kind, 100),
                urgency=urgency,
                dispatch_due=dispatch_due,
                resolution_due=resolution_due,
            )
        )

    def answer_on_spot(self, answer: str, now: datetime) -> None:
        self._check_status(Status.CLASSIFIED, doing="answer on the spot")
        self._record(CaseAnsweredOnSpot(answer=required_text("answer", answer, LONG_TEXT)))
        self._record(CaseResolved(resolution=answer.strip(), resolved_at=now))

    def file(self) -> None:
        self._check_status(Status.CLASSIFIED, doing="file")
        self._record(CaseFiled())

    def check_can_dispatch(self) -> None:
        """Raise unless the case is filed and waiting for a handling unit."""
        self._check_status(Status.FILED, doing="dispatch")

    def dispatch(
        self, grid_code: str, grid_branch_id: str | None, handler: SealedName, now: datetime
    ) -> None:
        self.check_can_dispatch()
        self._record(
            CaseDispatched(
                grid_code=grid_code,
                grid_branch_id=grid_branch_id,
                handler_person=handler.person_id,
                handler_ciphertext=handler.ciphertext,
                dispatched_at=now,
            )
        )

    def check_can_accept(self) -> None:
        self._check_status(Status.DISPATCHED, doing="accept")

    def accept(self, by: SealedName) -> None:
        self.check_can_accept()
        self._record(CaseAccepted(by_person=by.person_id, by_ciphertext=by.ciphertext))

    def return_to_sender(self, reason: str) -> None:
        self._check_status(Status.DISPATCHED, doing="return")
        self._record(CaseReturned(reason=required_text("reason", reason, LONG_TEXT)))

    def reassign(
        self, grid_code: str, grid_branch_id: str | None, handler: SealedName, reason: str
    ) -> None:
        self._check_status(Status.DISPATCHED, Status.IN_PROGRESS, doing="reassign")
        if grid_code == self.grid_code and self.is_handled_by(handler.person_id):
            raise RuleViolation(f"the case is with that handler of {grid_code} already")
        self._record(
            CaseReassigned(
                grid_code=grid_code,
                grid_branch_id=grid_branch_id,
                handler_person=handler.person_id,
                handler_ciphertext=handler.ciphertext,
                reason=required_text("reason", reason, LONG_TEXT),
            )
        )

    def is_handled_by(self, person_id: str) -> bool:
        return self.handler is not None and self.handler.person_id == person_id

    def note_progress(self, note: str) -> None:
        """``note`` is ciphertext under the resident's key, as are a mediation's records."""
        self._check_status(Status.IN_PROGRESS, Status.IN_MEDIATION, doing="note progress on")
        self._record(ProgressNoted(note_ciphertext=_sealed_text("note", note)))

    def check_can_open_mediation(self) -> None:
        self._check_status(Status.IN_PROGRESS, doing="open mediation on")

    def open_mediation(self, mediator: SealedName) -> None:
        self.check_can_open_mediation()
        self._record(
            MediationOpened(
                mediator_person=mediator.person_id, mediator_ciphertext=mediator.ciphertext
            )
        )

    def hold_mediation_session(self, summary: str) -> None:
        self._check_status(Status.IN_MEDIATION, doing="hold a mediation session on")
        self._record(MediationSessionHeld(summary_ciphertext=_sealed_text("summary", summary)))

    def conclude_mediation(self, agreed: bool, terms: str) -> None:
        self._check_status(Status.IN_MEDIATION, doing="conclude mediation on")
        self._record(
            MediationConcluded(agreed=agreed, terms_ciphertext=_sealed_text("terms", terms))
        )

    def resolve(self, resolution: str, now: datetime) -> None:
        self._check_status(Status.IN_PROGRESS, doing="resolve")
        self._record(
            CaseResolved(
                resolution=required_text("resolution", resolution, LONG_TEXT), resolved_at=now
            )
        )

    def follow_up(self, satisfaction: int, comment: str) -> None:
        self._check_status(Status.RESOLVED, doing="follow up")
        if not 1 <= satisfaction <= 5:
            raise InvalidInput(f"satisfaction is from 1 to 5, not {satisfaction}")
        self._record(CaseFollowedUp(satisfaction=satisfaction, comment=(comment or "").strip()))

    def close(self, now: datetime) -> None:
        self._check_status(Status.FOLLOWED_UP, doing="close")
        if self.satisfaction is not None and self.satisfaction <= 2:
            raise RuleViolation(f"the resident rated {self.satisfaction} of 5: reopen the case")
        self._record(CaseClosed(closed_at=now))

    def reopen(self, reason: str, now: datetime, policy: DeadlinePolicy) -> None:
        """Reopened when the resident is not satisfied: back to its handler, or, when it
        was answered on the spot and has none, back to be dispatched. New deadlines run
        from now, and a breach of them gets a notice of its own."""
        self._check_status(Status.FOLLOWED_UP, doing="reopen")
        if self.satisfaction is not None and self.satisfaction > 2:
            raise RuleViolation(f"the resident rated {self.satisfaction} of 5: close the case")
        self._record(
            CaseReopened(
                reason=required_text("reason", reason, LONG_TEXT),
                resolution_due=now + policy.resolution[self.urgency],
                dispatch_due=None if self.handler else now + policy.dispatch[self.urgency],
            )
        )

    def merge_into(self, original: Case) -> None:
        self._check_not_final(doing="merge")
        if original.id == self.id:
            raise RuleViolation("a case cannot be merged into itself")
        if original.status in FINAL:
            raise RuleViolation(f"the original case is {original.status}")
        self._record(CaseMerged(into_case_id=original.id))

    def reject(self, reason: str) -> None:
        self._check_status(Status.REGISTERED, Status.CLASSIFIED, doing="reject")
        self._record(CaseRejected(reason=required_text("reason", reason, LONG_TEXT)))

    def withdraw(self, reason: str) -> None:
        self._check_not_final(doing="withdraw")
        if self.status in (Status.RESOLVED, Status.FOLLOWED_UP):
            raise RuleViolation("a resolved case is closed or reopened, not withdrawn")
        self._record(CaseWithdrawn(reason=(reason or "").strip() or "resident withdrew"))

    def request_funds(
        self, amount_fen: int, payee: str, purpose: str, evidence: str
    ) -> FundingRequest:
        """Ask the community's special fund to pay a payee for this case. A retry of the
        request that is waiting changes nothing and returns it."""
        self._check_status(Status.IN_PROGRESS, Status.IN_MEDIATION, doing="request funds for")
        funding_amount(amount_fen)
        payee = payee_account(payee)
        purpose = required_text("purpose", purpose, 500)
        evidence = required_text("evidence", evidence, 500)
        waiting = self.pending_funding
        if waiting is not None:
            if (waiting.amount_fen, waiting.payee_account, waiting.purpose) == (
                amount_fen,
                payee,
                purpose,
            ):
                return waiting
            raise RuleViolation(
                f"the case waits for the outcome of funding request {waiting.expenditure_id}"
            )
        expenditure_id = expenditure_id_for(self.id, len(self.funding) + 1)
        self._record(
            CaseFundingRequested(
                expenditure_id=expenditure_id,
                community_code=self.community_code,
                amount_fen=amount_fen,
                payee_account=payee,
                purpose=purpose,
                evidence=evidence,
            )
        )
        return self.funding[expenditure_id]

    def record_funding_outcome(self, expenditure_id: str, paid: bool, reason: str) -> None:
        """What funds did with a request; recorded once, whatever the case's state now."""
        request = self.funding.get(expenditure_id)
        if request is None:
            raise RuleViolation(f"the case has no funding request {expenditure_id}")
        if request.status is not FundingStatus.PENDING:
            return  # recorded already: a redelivered outcome
        if paid:
            self._record(
                CaseFundingGranted(expenditure_id=expenditure_id, amount_fen=request.amount_fen)
            )
        else:
            self._record(
                CaseFundingRefused(
                    expenditure_id=expenditure_id,
                    reason=required_text("reason", reason, LONG_TEXT),
                )
            )

    def supervise(self, now: datetime) -> list[Deadline]:
        """Issue a notice for each deadline breached now and not noticed yet."""
        issued = []
        for deadline in self.breached(now):
            if deadline not in self.notices:
                due = self.dispatch_due if deadline is Deadline.DISPATCH else self.resolution_due
                assert due is not None
                self._record(SupervisionNoticeIssued(deadline=deadline, due=due, issued_at=now))
                issued.append(deadline)
        return issued

    # -- queries ------------------------------------------------------------------

    def breached(self, now: datetime) -> list[Deadline]:
        """The deadlines this case has passed, by its state now."""
        late = []
        undispatched = self.status in UNDISPATCHED
        if undispatched and self.dispatch_due and now > self.dispatch_due:
            late.append(Deadline.DISPATCH)
        if self.status in OPEN and self.resolution_due and now > self.resolution_due:
            late.append(Deadline.RESOLUTION)
        return late

    @property
    def pending_funding(self) -> FundingRequest | None:
        return next((r for r in self.funding.values() if r.status is FundingStatus.PENDING), None)

    # -- guards -----------------------------------------------------------------------

    def _check_status(self, *allowed: Status, doing: str) -> None:
        if self.status not in allowed:
            raise RuleViolation(
                f"cannot {doing} a case that is {self.status.value.replace('_', ' ')}"
            )

    def _check_not_final(self, doing: str) -> None:
        if self.status in FINAL:
            raise RuleViolation(f"cannot {doing} a case that is {self.status}")

    # -- state changes ------------------------------------------------------------------

    def apply(self, event: DomainEvent) -> None:
        """The event's own change, then the status the life cycle gives after it
        (``civitas.cases.lifecycle``, which the read models follow too)."""
        super().apply(event)
        self.status = status_after(event.event_type, vars(event)) or self.status

    @applies
    def _on_registered(self, event: CaseRegistered) -> None:
        self.channel = event.channel
        self.community_code, self.address = event.community_code, event.address
        self.urgency = event.urgency
        self.resident_id, self.registered_at = event.resident_id, event.registered_at
        self.description = SealedName(
            event.resident_id, event.description_ciphertext, event.description
        )
        if event.address_rest_ciphertext or event.address_rest:
            self.address_rest = SealedName(
                event.resident_id, event.address_rest_ciphertext, event.address_rest
            )
        self.resident_name_ciphertext = event.resident_name_ciphertext
        self.resident_phone_ciphertext = event.resident_phone_ciphertext
        self.request_digest = event.request_digest_ciphertext
        self.dispatch_due, self.resolution_due = event.dispatch_due, event.resolution_due

    @applies
    def _on_classified(self, event: CaseClassified) -> None:
        if event.dispatch_due != self.dispatch_due:
            self.notices.discard(Deadline.DISPATCH)  # a new deadline gets its own notice
        if event.resolution_due != self.resolution_due:
            self.notices.discard(Deadline.RESOLUTION)
        self.kind, self.urgency = event.category, event.urgency
        self.dispatch_due, self.resolution_due = event.dispatch_due, event.resolution_due

    @applies
    def _on_answered(self, event: CaseAnsweredOnSpot) -> None:
        pass  # the CaseResolved that follows changes the state

    @applies
    def _on_filed(self, event: CaseFiled) -> None:
        pass

    @applies
    def _on_dispatched(self, event: CaseDispatched) -> None:
        self.grid_code = event.grid_code
        self.handler = SealedName(event.handler_person, event.handler_ciphertext, event.handler)
        self.dispatched_at = event.dispatched_at

    @applies
    def _on_accepted(self, event: CaseAccepted) -> None:
        pass

    @applies
    def _on_returned(self, event: CaseReturned) -> None:
        self.grid_code, self.handler = None, None

    @applies
    def _on_reassigned(self, event: CaseReassigned) -> None:
        self.grid_code = event.grid_code
        self.handler = SealedName(event.handler_person, event.handler_ciphertext, event.handler)

    @applies
    def _on_noted(self, event: ProgressNoted) -> None:
        pass

    @applies
    def _on_mediation_opened(self, event: MediationOpened) -> None:
        self.mediator = SealedName(event.mediator_person, event.mediator_ciphertext, event.mediator)

    @applies
    def _on_mediation_session(self, event: MediationSessionHeld) -> None:
        pass

    @applies
    def _on_mediation_concluded(self, event: MediationConcluded) -> None:
        pass

    @applies
    def _on_resolved(self, event: CaseResolved) -> None:
        self.resolved_at = event.resolved_at

    @applies
    def _on_followed_up(self, event: CaseFollowedUp) -> None:
        self.satisfaction = event.satisfaction

    @applies
    def _on_closed(self, event: CaseClosed) -> None:
        pass

    @applies
    def _on_reopened(self, event: CaseReopened) -> None:
        self.satisfaction, self.resolved_at = None, None
        self.resolution_due = event.resolution_due
        self.notices.discard(Deadline.RESOLUTION)
        if event.dispatch_due is not None:
            self.dispatch_due = event.dispatch_due
            self.notices.discard(Deadline.DISPATCH)

    @applies
    def _on_merged(self, event: CaseMerged) -> None:
        self.merged_into = event.into_case_id

    @applies
    def _on_rejected(self, event: CaseRejected) -> None:
        pass

    @applies
    def _on_withdrawn(self, event: CaseWithdrawn) -> None:
        pass

    @applies
    def _on_notice(self, event: SupervisionNoticeIssued) -> None:
        self.notices.add(event.deadline)

    @applies
    def _on_funding_requested(self, event: CaseFundingRequested) -> None:
        self.funding[event.expenditure_id] = FundingRequest(
            event.expenditure_id, event.amount_fen, event.payee_account, event.purpose
        )

    @applies
    def _on_funding_granted(self, event: CaseFundingGranted) -> None:
        self.funding[event.expenditure_id].status = FundingStatus.GRANTED

    @applies
    def _on_funding_refused(self, event: CaseFundingRefused) -> None:
        request = self.funding[event.expenditure_id]
        request.status, request.reason = FundingStatus.REFUSED, event.reason
