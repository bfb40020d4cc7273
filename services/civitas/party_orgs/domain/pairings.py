"""Pairings (双结对) of an organ's party organization with a community's."""

from __future__ import annotations

from datetime import datetime

from civitas.errors import RuleViolation
from civitas.eventkit import Aggregate, DomainEvent, applies, natural_id
from civitas.validation import required_text as check_text

from .orgs import OrgKind, PartyOrg


def pairing_id_for(organ_org_id: str, community_org_id: str) -> str:
    """One pairing per pair of organizations."""
    return str(natural_id("pairing", organ_org_id, community_org_id))


class PairingFormed(DomainEvent):
    organ_org_id: str
    community_org_id: str
    formed_at: datetime


class PairingEnded(DomainEvent):
    reason: str


class Pairing(Aggregate):
    category = "pairing"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.organ_org_id = ""
        self.community_org_id = ""
        self.formed_at: datetime | None = None
        self.active = False
        self.end_reason: str | None = None

    def form(self, organ: PartyOrg, community: PartyOrg, now: datetime) -> None:
        if organ.kind is not OrgKind.ORGAN_GENERAL_BRANCH:
            raise RuleViolation(
                f"{organ.name} is a {organ.kind}, not an organ's party organization"
            )
        if community.kind is not OrgKind.COMMUNITY_COMMITTEE:
            raise RuleViolation(
                f"{community.name} is a {community.kind}, not a community party committee"
            )
        if organ.dissolved or community.dissolved:
            raise RuleViolation("a dissolved organization cannot be paired")
        if self.active:
            return
        self._record(
            PairingFormed(organ_org_id=organ.id, community_org_id=community.id, formed_at=now)
        )

    def end(self, reason: str) -> None:
        if not self.active:
            raise RuleViolation("the pairing has ended already")
        self._record(PairingEnded(reason=check_text("reason", reason, 500)))

    @applies
    def _on_pairing_formed(self, event: PairingFormed) -> None:
        self.organ_org_id, self.community_org_id = event.organ_org_id, event.community_org_id
        self.formed_at, self.active, self.end_reason = event.formed_at, True, None

    @applies
    def _on_pairing_ended(self, event: PairingEnded) -> None:
        self.active, self.end_reason = False, event.reason
