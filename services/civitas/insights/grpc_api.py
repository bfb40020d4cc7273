"""The edges of insights: query results as protobuf, served over gRPC and over HTTP.

`Responses` builds each reply once; the gRPC servicer returns it and the HTTP API
returns its JSON mapping, so both answer the same.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from civitas.chassis.convert import timestamp_out
from civitas.sealing import details_with, text_fields

from .case_texts import CaseTexts, Texts
from .queries import InsightsQueries, MonthPoint, Scorecard
from .v1 import insights_pb2 as pb
from .v1 import insights_pb2_grpc as pb_grpc


def scorecard_out(card: Scorecard) -> pb.Scorecard:
    return pb.Scorecard(**dataclasses.asdict(card))


def point_out(point: MonthPoint) -> pb.MonthPoint:
    return pb.MonthPoint(**dataclasses.asdict(point))


def _json(details: dict[str, Any]) -> str:
    return json.dumps(details, ensure_ascii=False, sort_keys=True)


def authorization_of(context: Any) -> str:
    """The caller's ``authorization`` metadata, as the interceptor verified it."""
    return next((v for k, v in context.invocation_metadata() or () if k == "authorization"), "")


class Responses:
    """Each query's reply, as protobuf. The queries check what the caller named (codes,
    ids, months) whole, for both edges: nothing is trimmed or guessed."""

    def __init__(self, queries: InsightsQueries, case_texts: CaseTexts | None = None) -> None:
        self.queries = queries
        self.case_texts = case_texts
        """cases' API, which opens a case's sealed text for the caller (none: unavailable)"""

    async def scorecard(self, unit_code: str) -> pb.GetScorecardResponse:
        card = await self.queries.scorecard(unit_code)
        return pb.GetScorecardResponse(scorecard=scorecard_out(card))

    async def children(self, parent_code: str) -> pb.ListScorecardsResponse:
        cards = await self.queries.children(parent_code)
        return pb.ListScorecardsResponse(scorecards=[scorecard_out(c) for c in cards])

    async def trend(self, unit_code: str, months: int) -> pb.GetTrendResponse:
        points = await self.queries.trend(unit_code, months or 12)
        return pb.GetTrendResponse(points=[point_out(p) for p in points])

    async def member_card(self, member_id: str) -> pb.GetMemberCardResponse:
        card = await self.queries.member_card(member_id)
        return pb.GetMemberCardResponse(
            card=pb.MemberCard(
                member_id=card.member_id,
                member_number=card.member_number,
                org_id=card.org_id,
                org_name=card.org_name,
                unit_code=card.unit_code,
                working=card.working,
                reports_to=card.reports_to,
                activities=[
                    pb.CardEntry(
                        entry_id=a["entry_id"],
                        kind=a["kind"],
                        description=a["description"],
                        tenths_of_hours=a["tenths_of_hours"],
                        occurred_at=timestamp_out(a["occurred_at"]),
                    )
                    for a in card.activities
                ],
                feedback=[
                    pb.Feedback(
                        feedback_id=f["feedback_id"],
                        rating=f["rating"],
                        comment=f["comment"],
                        recorded_at=timestamp_out(f["recorded_at"]),
                    )
                    for f in card.feedback
                ],
                appraisals=[pb.Appraisal(**a) for a in card.appraisals],
                volunteer_tenths_of_hours=card.volunteer_tenths_of_hours,
                mean_feedback_rating=card.mean_feedback_rating,
            )
        )

    async def case_timeline(self, case_id: str, authorization: str) -> pb.GetCaseTimelineResponse:
        """The case's events; its sealed text as cases shows it to the caller, asked with
        the caller's own ``authorization`` (``[hidden]``, ``[erased]`` by cases' rule;
        ``[unavailable]`` when cases does not answer)."""
        timeline = await self.queries.case_timeline(case_id)
        stored = [json.loads(e["details"]) for e in timeline.entries]
        texts: Texts = {}
        if self.case_texts and any(text_fields(d) for d in stored):
            texts = await self.case_texts.of(timeline.case_id, authorization)
        return pb.GetCaseTimelineResponse(
            timeline=pb.CaseTimeline(
                case_id=timeline.case_id,
                community_code=timeline.community_code,
                status=timeline.status,
                entries=[
                    pb.TimelineEntry(
                        version=e["version"],
                        type=e["type"],
                        occurred_at=timestamp_out(e["occurred_at"]),
                        actor=e["actor"] or "",
                        correlation_id=e["correlation_id"] or "",
                        details_json=_json(details_with(d, texts.get(e["version"], {}))),
                    )
                    for e, d in zip(timeline.entries, stored, strict=True)
                ],
            )
        )

    async def fund_statement(self, account_id: str) -> pb.GetFundStatementResponse:
        statement = await self.queries.fund_statement(account_id)
        return pb.GetFundStatementResponse(
            statement=pb.FundStatement(
                account_id=statement.account_id,
                kind=statement.kind,
                owner_code=statement.owner_code,
                name=statement.name,
                balance_fen=statement.balance_fen,
                reserved_fen=statement.reserved_fen,
                entries=[
                    pb.StatementEntry(
                        transfer_id=e["transfer_id"],
                        amount_fen=e["amount_fen"],
                        counterpart_account=e["counterpart"],
                        booked_at=timestamp_out(e["booked_at"]),
                        memo=e["memo"],
                        balance_fen=e["balance_fen"],
                    )
                    for e in statement.entries
                ],
            )
        )


class InsightsServicer(pb_grpc.InsightsServiceServicer):
    """Read only: every signed-in caller may ask (the interceptor checks the token)."""

    def __init__(self, responses: Responses) -> None:
        self.responses = responses

    async def GetScorecard(self, request: pb.GetScorecardRequest, context: Any) -> Any:
        return await self.responses.scorecard(request.unit_code)

    async def ListScorecards(self, request: pb.ListScorecardsRequest, context: Any) -> Any:
        return await self.responses.children(request.parent_code)

    async def GetTrend(self, request: pb.GetTrendRequest, context: Any) -> Any:
        return await self.responses.trend(request.unit_code, request.months)

    async def GetMemberCard(self, request: pb.GetMemberCardRequest, context: Any) -> Any:
        return await self.responses.member_card(request.member_id)

    async def GetCaseTimeline(self, request: pb.GetCaseTimelineRequest, context: Any) -> Any:
        return await self.responses.case_timeline(request.case_id, authorization_of(context))

    async def GetFundStatement(self, request: pb.GetFundStatementRequest, context: Any) -> Any:
        return await self.responses.fund_statement(request.account_id)
