"""The gRPC edge of insights: requests to views, read models to replies; nothing else.

Each reply is built once, here; the HTTP API (``http.py``) answers with the same
reply's JSON mapping, so both doors answer the same.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from civitas.chassis.convert import timestamp_out

from .queries import FundStatement, MemberCard, MonthPoint, Scorecard
from .v1 import insights_pb2 as pb
from .v1 import insights_pb2_grpc as pb_grpc
from .views import InsightsViews, Timeline


def scorecard_out(card: Scorecard) -> pb.Scorecard:
    return pb.Scorecard(**dataclasses.asdict(card))


def scorecard_reply(card: Scorecard) -> pb.GetScorecardResponse:
    return pb.GetScorecardResponse(scorecard=scorecard_out(card))


def scorecards_reply(cards: list[Scorecard]) -> pb.ListScorecardsResponse:
    return pb.ListScorecardsResponse(scorecards=[scorecard_out(c) for c in cards])


def trend_reply(points: list[MonthPoint]) -> pb.GetTrendResponse:
    return pb.GetTrendResponse(points=[pb.MonthPoint(**dataclasses.asdict(p)) for p in points])


def member_card_reply(card: MemberCard) -> pb.GetMemberCardResponse:
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


def timeline_reply(timeline: Timeline) -> pb.GetCaseTimelineResponse:
    return pb.GetCaseTimelineResponse(
        timeline=pb.CaseTimeline(
            case_id=timeline.case_id,
            community_code=timeline.community_code,
            status=timeline.status,
            entries=[
                pb.TimelineEntry(
                    version=e.version,
                    type=e.type,
                    occurred_at=timestamp_out(e.occurred_at),
                    actor=e.actor,
                    correlation_id=e.correlation_id,
                    details_json=json.dumps(e.details, ensure_ascii=False, sort_keys=True),
                )
                for e in timeline.entries
            ],
        )
    )


def statement_reply(statement: FundStatement) -> pb.GetFundStatementResponse:
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


def authorization_of(context: Any) -> str:
    """The caller's ``authorization`` metadata, as the interceptor verified it."""
    return next((v for k, v in context.invocation_metadata() or () if k == "authorization"), "")


class InsightsServicer(pb_grpc.InsightsServiceServicer):
    """Read only: every signed-in caller may ask (the interceptor checks the token)."""

    def __init__(self, views: InsightsViews) -> None:
        self.views = views

    async def GetScorecard(self, request: pb.GetScorecardRequest, context: Any) -> Any:
        return scorecard_reply(await self.views.scorecard(request.unit_code))

    async def ListScorecards(self, request: pb.ListScorecardsRequest, context: Any) -> Any:
        return scorecards_reply(await self.views.children(request.parent_code))

    async def GetTrend(self, request: pb.GetTrendRequest, context: Any) -> Any:
        return trend_reply(await self.views.trend(request.unit_code, request.months))

    async def GetMemberCard(self, request: pb.GetMemberCardRequest, context: Any) -> Any:
        return member_card_reply(await self.views.member_card(request.member_id))

    async def GetCaseTimeline(self, request: pb.GetCaseTimelineRequest, context: Any) -> Any:
        timeline = await self.views.case_timeline(request.case_id, authorization_of(context))
        return timeline_reply(timeline)

    async def GetFundStatement(self, request: pb.GetFundStatementRequest, context: Any) -> Any:
        return statement_reply(await self.views.fund_statement(request.account_id))
