"""A case's life cycle as cases' events state it, written once: the status a case is in
after each event, and which statuses count as open, ended or undispatched.

The Case aggregate takes its status from here, and so do the read models that follow
cases' events: cases' own case index and insights' case facts. This module is part of
cases' event contract, like its ``v1`` stubs: other services may import it, and it
imports nothing but the standard library.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class Status(enum.StrEnum):
    REGISTERED = "registered"
    CLASSIFIED = "classified"
    FILED = "filed"
    DISPATCHED = "dispatched"
    IN_PROGRESS = "in_progress"
    IN_MEDIATION = "in_mediation"
    RESOLVED = "resolved"
    FOLLOWED_UP = "followed_up"
    CLOSED = "closed"
    MERGED = "merged"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


FINAL = frozenset({Status.CLOSED, Status.MERGED, Status.REJECTED, Status.WITHDRAWN})
"""Nothing but funds' outcomes and supervision changes a case in these."""
ENDED = FINAL | {Status.RESOLVED, Status.FOLLOWED_UP}
"""No longer worked on: what open counts and overdue leave out."""
OPEN = frozenset(Status) - ENDED
UNDISPATCHED = frozenset({Status.REGISTERED, Status.CLASSIFIED, Status.FILED})
"""Held to the dispatch deadline."""

STATUS_AFTER: Mapping[str, Status] = {
    "CaseRegistered": Status.REGISTERED,
    "CaseClassified": Status.CLASSIFIED,
    "CaseFiled": Status.FILED,
    "CaseDispatched": Status.DISPATCHED,
    "CaseAccepted": Status.IN_PROGRESS,
    "CaseReturned": Status.FILED,
    "CaseReassigned": Status.DISPATCHED,
    "MediationOpened": Status.IN_MEDIATION,
    "MediationConcluded": Status.IN_PROGRESS,
    "CaseResolved": Status.RESOLVED,
    "CaseFollowedUp": Status.FOLLOWED_UP,
    "CaseClosed": Status.CLOSED,
    "CaseMerged": Status.MERGED,
    "CaseRejected": Status.REJECTED,
    "CaseWithdrawn": Status.WITHDRAWN,
}
"""The status after each event that sets one whatever it carries (``CaseReopened``
depends on its data: :func:`status_after`)."""
REOPENED = "CaseReopened"


def status_after(event_type: str, data: Mapping[str, Any]) -> Status | None:
    """The status a case is in after an event of this type and data (the stored JSON or
    the event's fields), None when the event leaves the status as it was. A reopened
    case goes back to its handler, or, when it was answered on the spot and had none
    (the event then carries a new ``dispatch_due``), back to be dispatched."""
    if event_type == REOPENED:
        return Status.FILED if data.get("dispatch_due") else Status.IN_PROGRESS
    return STATUS_AFTER.get(event_type)


def values(statuses: frozenset[Status]) -> list[str]:
    """The stored values of some statuses, sorted: for a read model's ``IN`` clause."""
    return sorted(s.value for s in statuses)
