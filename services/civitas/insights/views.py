"""insights' reads as its edges serve them (cosmicpython's ``views``): the queries over
its read models, and a case's timeline as its caller may see it. Both doors (gRPC and
HTTP) take every answer from here and only convert it.

Who sees a case's sealed text is cases' rule, applied once, by cases: a timeline asks
cases' ``GetCaseTexts`` with the caller's own ``authorization`` and shows what cases
answers (the text, ``[hidden]`` or ``[erased]``), ``[unavailable]`` when cases does not
answer; never the ciphertext or old plaintext insights stores."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from civitas.sealing import details_with, text_fields

from .case_texts import CaseTexts, Texts
from .queries import FundStatement, InsightsQueries, MemberCard, MonthPoint, Scorecard

DEFAULT_MONTHS = 12
"""A trend's span when the caller names none (0, protobuf's unset)."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One event of a case's timeline: clear fields, and sealed text as cases shows it."""

    version: int
    type: str
    occurred_at: datetime
    actor: str
    correlation_id: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Timeline:
    """A case's events as one caller sees them, with where the case stands."""

    case_id: str
    community_code: str
    status: str
    entries: list[TimelineEntry]


class InsightsViews:
    """Reads for insights' edges. The queries check what the caller named (codes, ids,
    months) whole, for both doors: nothing is trimmed or guessed."""

    def __init__(self, queries: InsightsQueries, case_texts: CaseTexts | None = None) -> None:
        self.queries = queries
        self.case_texts = case_texts
        """cases' API, which opens a case's sealed text for the caller (none: unavailable)"""

    async def scorecard(self, unit_code: str) -> Scorecard:
        return await self.queries.scorecard(unit_code)

    async def children(self, parent_code: str) -> list[Scorecard]:
        return await self.queries.children(parent_code)

    async def trend(self, unit_code: str, months: int) -> list[MonthPoint]:
        """The last ``months`` calendar months (:data:`DEFAULT_MONTHS` for 0)."""
        return await self.queries.trend(unit_code, months or DEFAULT_MONTHS)

    async def member_card(self, member_id: str) -> MemberCard:
        return await self.queries.member_card(member_id)

    async def fund_statement(self, account_id: str) -> FundStatement:
        return await self.queries.fund_statement(account_id)

    async def case_timeline(self, case_id: str, authorization: str) -> Timeline:
        """The case's events; their sealed text as cases shows it to the caller whose
        ``authorization`` header this is (cases is asked only when some event has any)."""
        stored = await self.queries.case_timeline(case_id)
        data = [json.loads(e["details"]) for e in stored.entries]
        texts: Texts = {}
        if self.case_texts and any(text_fields(d) for d in data):
            texts = await self.case_texts.of(stored.case_id, authorization)
        entries = [
            TimelineEntry(
                version=e["version"],
                type=e["type"],
                occurred_at=e["occurred_at"],
                actor=e["actor"] or "",
                correlation_id=e["correlation_id"] or "",
                details=details_with(d, texts.get(e["version"], {})),
            )
            for e, d in zip(stored.entries, data, strict=True)
        ]
        return Timeline(stored.case_id, stored.community_code, stored.status, entries)
