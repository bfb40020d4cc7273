"""Expenditures: requested → approved → reserved → disbursed or voided; or rejected.

Separation of duties holds per person: every approval comes from a different person,
and none from the requester; above a threshold the street approves too (so a large
expenditure takes three people: the requester and two approvers). The money moves
through the fund account's reservation and a transfer whose id derives from the
expenditure, so retries never pay twice.
"""

from __future__ import annotations

import enum
from datetime import datetime

from civitas.errors import InvalidInput, RuleViolation
from civitas.eventkit import Aggregate, DomainEvent, applies
from civitas.validation import required_text

from .accounts import check_amount, transfer_id_for


class ExpenditureStatus(enum.StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    RESERVED = "reserved"
    DISBURSED = "disbursed"
    VOIDED = "voided"
    REJECTED = "rejected"


class ApprovalLevel(enum.StrEnum):
    COMMUNITY = "community"
    STREET = "street"


class ExpenditureRequested(DomainEvent):
    community_code: str
    fund_account: str
    payee_account: str
    amount_fen: int
    purpose: str
    evidence: str
    case_id: str | None
    requester: str
    needs_street_approval: bool
    # Opened by the saga for a case's request: paid as soon as it is approved.
    by_case_request: bool = False


class ExpenditureApproved(DomainEvent):
    approver: str
    level: ApprovalLevel


class ExpenditureReserved(DomainEvent):
    transfer_id: str


# The outcomes name the case a case's expenditure pays for, so that cases can record
# the outcome from the event alone (absent in events from before the saga).
class ExpenditureDisbursed(DomainEvent):
    disbursed_at: datetime
    case_id: str | None = None


class ExpenditureVoided(DomainEvent):
    reason: str
    case_id: str | None = None


class ExpenditureRejected(DomainEvent):
    by: str
    reason: str
    case_id: str | None = None


class Expenditure(Aggregate):
    category = "expenditure"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.status = ExpenditureStatus.REQUESTED
        self.community_code = ""
        self.fund_account = ""
        self.payee_account = ""
        self.amount_fen = 0
        self.case_id: str | None = None
        self.requester = ""
        self.needs_street_approval = False
        self.by_case_request = False
        self.approvals: dict[ApprovalLevel, str] = {}
        self.requested: ExpenditureRequested | None = None  # the request, as first made

    @classmethod
    def request(
        cls,
        expenditure_id: str,
        community_code: str,
        fund_account: str,
        payee_account: str,
        amount_fen: int,
        purpose: str,
        evidence: str,
        case_id: str | None,
        requester: str,
        street_threshold_fen: int,
        *,
        by_case_request: bool = False,
    ) -> Expenditure:
        if fund_account == payee_account:
            raise InvalidInput("the payee is not the fund itself")
        expenditure = cls(expenditure_id)
        expenditure._record(
            ExpenditureRequested(
                community_code=community_code,
                fund_account=fund_account,
                payee_account=payee_account,
                amount_fen=check_amount(amount_fen),
                purpose=required_text("purpose", purpose, 500),
                evidence=required_text("evidence", evidence, 500),
                case_id=case_id,
                requester=required_text("requester", requester),
                needs_street_approval=amount_fen > street_threshold_fen,
                by_case_request=by_case_request,
            )
        )
        return expenditure

    @property
    def transfer_id(self) -> str:
        """The transfer that pays this expenditure: derived, so it is paid once."""
        return transfer_id_for(f"expenditure:{self.id}")

    @property
    def levels_needed(self) -> set[ApprovalLevel]:
        levels = {ApprovalLevel.COMMUNITY}
        if self.needs_street_approval:
            levels.add(ApprovalLevel.STREET)
        return levels

    def is_same_request(self, other: Expenditure) -> bool:
        """Whether ``other`` asks for exactly what this expenditure was requested for (a
        retry under the same request id)."""
        return self.requested is not None and self.requested == other.requested

    def approve(self, approver: str, level: ApprovalLevel) -> None:
        self._check(ExpenditureStatus.REQUESTED, doing="approve")
        if approver == self.requester:
            raise RuleViolation("the requester cannot approve their own expenditure")
        for given, by in self.approvals.items():
            if by == approver:
                raise RuleViolation(
                    f"{approver} approved it for the {given} already: "
                    "each approval comes from another person"
                )
        if level not in self.levels_needed:
            raise RuleViolation(f"this expenditure needs no {level} approval")
        if level in self.approvals:
            raise RuleViolation(f"{self.approvals[level]} approved it for the {level} already")
        self._record(ExpenditureApproved(approver=approver, level=level))

    def mark_reserved(self) -> None:
        self._check(ExpenditureStatus.APPROVED, doing="reserve funds for")
        self._record(ExpenditureReserved(transfer_id=self.transfer_id))

    def mark_disbursed(self, now: datetime) -> None:
        self._check(ExpenditureStatus.RESERVED, doing="disburse")
        self._record(ExpenditureDisbursed(disbursed_at=now, case_id=self.case_id))

    def void(self, reason: str) -> None:
        self._check(ExpenditureStatus.RESERVED, ExpenditureStatus.APPROVED, doing="void")
        self._record(
            ExpenditureVoided(reason=required_text("reason", reason, 500), case_id=self.case_id)
        )

    def reject(self, by: str, reason: str) -> None:
        self._check(ExpenditureStatus.REQUESTED, doing="reject")
        self._record(
            ExpenditureRejected(
                by=required_text("by", by),
                reason=required_text("reason", reason, 500),
                case_id=self.case_id,
            )
        )

    def _check(self, *allowed: ExpenditureStatus, doing: str) -> None:
        if self.status not in allowed:
            raise RuleViolation(f"cannot {doing} an expenditure that is {self.status}")

    @applies
    def _on_requested(self, event: ExpenditureRequested) -> None:
        self.community_code, self.fund_account = event.community_code, event.fund_account
        self.payee_account, self.amount_fen = event.payee_account, event.amount_fen
        self.case_id, self.requester = event.case_id, event.requester
        self.needs_street_approval = event.needs_street_approval
        self.by_case_request = event.by_case_request
        self.requested = event

    @applies
    def _on_approved(self, event: ExpenditureApproved) -> None:
        self.approvals[event.level] = event.approver
        if set(self.approvals) >= self.levels_needed:
            self.status = ExpenditureStatus.APPROVED

    @applies
    def _on_reserved(self, event: ExpenditureReserved) -> None:
        self.status = ExpenditureStatus.RESERVED

    @applies
    def _on_disbursed(self, event: ExpenditureDisbursed) -> None:
        self.status = ExpenditureStatus.DISBURSED

    @applies
    def _on_voided(self, event: ExpenditureVoided) -> None:
        self.status = ExpenditureStatus.VOIDED

    @applies
    def _on_rejected(self, event: ExpenditureRejected) -> None:
        self.status = ExpenditureStatus.REJECTED
