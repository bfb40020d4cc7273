"""The gRPC edge of cases: protobuf in, commands and queries, protobuf out."""

from __future__ import annotations

import json
from typing import Any

from civitas.chassis.convert import enum_in, enum_out, timestamp_in, timestamp_out, uuid_in
from civitas.chassis.interceptor import current_caller, current_principal
from civitas.chassis.requests import request_id_of
from civitas.errors import InvalidInput
from civitas.geography import UnitKind, unit_code

from .application import Cases, HistoricalCase
from .case_index import CaseFilter
from .domain.case import Case, Channel, Urgency
from .lifecycle import Status
from .v1 import cases_pb2 as pb
from .v1 import cases_pb2_grpc as pb_grpc
from .views import CaseView, CaseViews


class CasesServicer(pb_grpc.CasesServiceServicer):
    """Converts between protobuf and the application; nothing else."""

    def __init__(self, app: Cases, views: CaseViews) -> None:
        self.app = app
        self.views = views

    async def _case_out(self, case: Case) -> pb.Case:
        return case_message(await self.views.seen(current_principal(), case))

    def _id(self, request: Any) -> str:
        return uuid_in(request.case_id, "case_id")

    async def current(self, kind: str, object_id: str) -> pb.Case:
        """A case as it is now: the reply to a repeated request id (chassis.requests)."""
        return await self._case_out(await self.app.get(current_caller(), object_id))

    async def RegisterCase(
        self, request: pb.RegisterCaseRequest, context: Any
    ) -> pb.RegisterCaseResponse:
        case = await self.app.register(
            current_caller(),
            enum_in(request.channel, pb.Channel, "CHANNEL_", Channel, "channel"),
            request.community_code,
            request.address,
            request.description,
            enum_in(request.urgency, pb.Urgency, "URGENCY_", Urgency, "urgency"),
            request.resident_name,
            request.resident_phone,
            request_id_of(request),
        )
        return pb.RegisterCaseResponse(case=await self._case_out(case))

    async def ClassifyCase(
        self, request: pb.ClassifyCaseRequest, context: Any
    ) -> pb.ClassifyCaseResponse:
        urgency = enum_in(request.urgency, pb.Urgency, "URGENCY_", Urgency, "urgency")
        case = await self.app.classify(
            current_caller(), self._id(request), request.category, urgency
        )
        return pb.ClassifyCaseResponse(case=await self._case_out(case))

    async def AnswerOnSpot(
        self, request: pb.AnswerOnSpotRequest, context: Any
    ) -> pb.AnswerOnSpotResponse:
        case = await self.app.answer_on_spot(current_caller(), self._id(request), request.answer)
        return pb.AnswerOnSpotResponse(case=await self._case_out(case))

    async def FileCase(self, request: pb.FileCaseRequest, context: Any) -> pb.FileCaseResponse:
        case = await self.app.file(current_caller(), self._id(request))
        return pb.FileCaseResponse(case=await self._case_out(case))

    async def DispatchCase(
        self, request: pb.DispatchCaseRequest, context: Any
    ) -> pb.DispatchCaseResponse:
        case = await self.app.dispatch(
            current_caller(), self._id(request), request.grid_code or None
        )
        return pb.DispatchCaseResponse(case=await self._case_out(case))

    async def AcceptCase(
        self, request: pb.AcceptCaseRequest, context: Any
    ) -> pb.AcceptCaseResponse:
        case = await self.app.accept(
            current_caller(),
            self._id(request),
            request.accepted_by,
            request.accepted_by_person_id or None,
        )
        return pb.AcceptCaseResponse(case=await self._case_out(case))

    async def RequestFunds(
        self, request: pb.RequestFundsRequest, context: Any
    ) -> pb.RequestFundsResponse:
        case = await self.app.request_funds(
            current_caller(),
            self._id(request),
            request.amount_fen,
            request.payee_account,
            request.purpose,
            request.evidence,
        )
        return pb.RequestFundsResponse(case=await self._case_out(case))

    async def ReturnCase(
        self, request: pb.ReturnCaseRequest, context: Any
    ) -> pb.ReturnCaseResponse:
        case = await self.app.return_to_sender(current_caller(), self._id(request), request.reason)
        return pb.ReturnCaseResponse(case=await self._case_out(case))

    async def ReassignCase(
        self, request: pb.ReassignCaseRequest, context: Any
    ) -> pb.ReassignCaseResponse:
        case = await self.app.reassign(
            current_caller(), self._id(request), request.grid_code, request.reason
        )
        return pb.ReassignCaseResponse(case=await self._case_out(case))

    async def AddProgressNote(
        self, request: pb.AddProgressNoteRequest, context: Any
    ) -> pb.AddProgressNoteResponse:
        case = await self.app.note_progress(current_caller(), self._id(request), request.note)
        return pb.AddProgressNoteResponse(case=await self._case_out(case))

    async def OpenMediation(
        self, request: pb.OpenMediationRequest, context: Any
    ) -> pb.OpenMediationResponse:
        case = await self.app.open_mediation(
            current_caller(),
            self._id(request),
            request.mediator,
            request.mediator_person_id or None,
        )
        return pb.OpenMediationResponse(case=await self._case_out(case))

    async def RecordMediationSession(
        self, request: pb.RecordMediationSessionRequest, context: Any
    ) -> pb.RecordMediationSessionResponse:
        case = await self.app.hold_mediation_session(
            current_caller(), self._id(request), request.summary
        )
        return pb.RecordMediationSessionResponse(case=await self._case_out(case))

    async def ConcludeMediation(
        self, request: pb.ConcludeMediationRequest, context: Any
    ) -> pb.ConcludeMediationResponse:
        case = await self.app.conclude_mediation(
            current_caller(), self._id(request), request.agreed, request.terms
        )
        return pb.ConcludeMediationResponse(case=await self._case_out(case))

    async def ResolveCase(
        self, request: pb.ResolveCaseRequest, context: Any
    ) -> pb.ResolveCaseResponse:
        case = await self.app.resolve(current_caller(), self._id(request), request.resolution)
        return pb.ResolveCaseResponse(case=await self._case_out(case))

    async def FollowUpCase(
        self, request: pb.FollowUpCaseRequest, context: Any
    ) -> pb.FollowUpCaseResponse:
        satisfaction = _satisfaction(request.satisfaction)
        case = await self.app.follow_up(
            current_caller(), self._id(request), satisfaction, request.comment
        )
        return pb.FollowUpCaseResponse(case=await self._case_out(case))

    async def CloseCase(self, request: pb.CloseCaseRequest, context: Any) -> pb.CloseCaseResponse:
        case = await self.app.close(current_caller(), self._id(request))
        return pb.CloseCaseResponse(case=await self._case_out(case))

    async def ReopenCase(
        self, request: pb.ReopenCaseRequest, context: Any
    ) -> pb.ReopenCaseResponse:
        case = await self.app.reopen(current_caller(), self._id(request), request.reason)
        return pb.ReopenCaseResponse(case=await self._case_out(case))

    async def MergeCase(self, request: pb.MergeCaseRequest, context: Any) -> pb.MergeCaseResponse:
        case = await self.app.merge(
            current_caller(),
            uuid_in(request.duplicate_case_id, "duplicate_case_id"),
            uuid_in(request.original_case_id, "original_case_id"),
        )
        return pb.MergeCaseResponse(case=await self._case_out(case))

    async def RejectCase(
        self, request: pb.RejectCaseRequest, context: Any
    ) -> pb.RejectCaseResponse:
        case = await self.app.reject(current_caller(), self._id(request), request.reason)
        return pb.RejectCaseResponse(case=await self._case_out(case))

    async def WithdrawCase(
        self, request: pb.WithdrawCaseRequest, context: Any
    ) -> pb.WithdrawCaseResponse:
        case = await self.app.withdraw(current_caller(), self._id(request), request.reason)
        return pb.WithdrawCaseResponse(case=await self._case_out(case))

    async def ImportCase(
        self, request: pb.ImportCaseRequest, context: Any
    ) -> pb.ImportCaseResponse:
        intake = request.intake
        if not request.HasField("received_at"):
            raise InvalidInput("received_at is required")
        if intake.request_id:
            raise InvalidInput("intake.request_id is not read: set the request's request_id")

        def when(field: Any) -> Any:
            return timestamp_in(getattr(request, field)) if request.HasField(field) else None

        record = HistoricalCase(
            channel=enum_in(intake.channel, pb.Channel, "CHANNEL_", Channel, "intake.channel"),
            community_code=intake.community_code,
            address=intake.address,
            description=intake.description,
            urgency=enum_in(intake.urgency, pb.Urgency, "URGENCY_", Urgency, "intake.urgency"),
            resident_name=intake.resident_name,
            resident_phone=intake.resident_phone,
            received_at=timestamp_in(request.received_at),
            category=request.category,
            grid_code=request.grid_code or None,
            dispatched_at=when("dispatched_at"),
            resolution=request.resolution or None,
            resolved_at=when("resolved_at"),
            satisfaction=(_satisfaction(request.satisfaction) if request.satisfaction else None),
            closed_at=when("closed_at"),
            source_id=request.source_id or None,
        )
        case = await self.app.import_case(current_caller(), record, request_id_of(request))
        return pb.ImportCaseResponse(case=await self._case_out(case))

    async def GetCase(self, request: pb.GetCaseRequest, context: Any) -> pb.GetCaseResponse:
        view = await self.views.case(current_caller(), self._id(request))
        return pb.GetCaseResponse(case=case_message(view))

    async def GetCaseTexts(
        self, request: pb.GetCaseTextsRequest, context: Any
    ) -> pb.GetCaseTextsResponse:
        case_id = self._id(request)
        texts = await self.views.texts(current_caller(), case_id)
        return pb.GetCaseTextsResponse(
            case_id=case_id,
            texts=[
                pb.CaseText(version=t.version, event_id=t.event_id, type=t.type, fields=t.fields)
                for t in texts
            ],
        )

    async def ListCases(self, request: pb.ListCasesRequest, context: Any) -> pb.ListCasesResponse:
        views, token = await self.views.page(
            current_caller(),
            self._filter(request),
            request.page_size or 50,
            request.page_token or None,
        )
        return pb.ListCasesResponse(
            cases=[case_message(v) for v in views], next_page_token=token or ""
        )

    @staticmethod
    def _filter(request: pb.ListCasesRequest) -> CaseFilter:
        for field, kind in (
            ("community_code", UnitKind.COMMUNITY),
            ("street_code", UnitKind.STREET),
        ):
            value = getattr(request, field)
            if value:
                unit_code(value, field, kind)
        status = (
            enum_in(request.status, pb.Status, "STATUS_", Status, "status")
            if request.status
            else None
        )
        channel = (
            enum_in(request.channel, pb.Channel, "CHANNEL_", Channel, "channel")
            if request.channel
            else None
        )
        return CaseFilter(
            community_code=request.community_code or None,
            street_code=request.street_code or None,
            status=status,
            overdue_only=request.overdue_only,
            channel=channel.value if channel else None,
            registered_from=(
                timestamp_in(request.registered_from)
                if request.HasField("registered_from")
                else None
            ),
            registered_to=(
                timestamp_in(request.registered_to) if request.HasField("registered_to") else None
            ),
        )


def case_message(view: CaseView) -> pb.Case:
    """A case as its caller may see it (:class:`CaseView`), as a message."""
    return pb.Case(
        case_id=view.case_id,
        status=enum_out(view.status, pb.Status, "STATUS_"),
        channel=enum_out(view.channel, pb.Channel, "CHANNEL_"),
        community_code=view.community_code,
        address=view.address,
        description=view.description,
        urgency=enum_out(view.urgency, pb.Urgency, "URGENCY_"),
        category=view.category,
        resident_id=view.resident_id,
        resident_name=view.resident_name,
        resident_phone=view.resident_phone,
        registered_at=timestamp_out(view.registered_at),
        dispatch_due=timestamp_out(view.dispatch_due),
        resolution_due=timestamp_out(view.resolution_due),
        grid_code=view.grid_code,
        handler=view.handler,
        handler_person_id=view.handler_person_id,
        satisfaction=view.satisfaction,
        merged_into_case_id=view.merged_into_case_id,
        overdue=view.overdue,
        supervision_notices=[
            enum_out(n, pb.Deadline, "DEADLINE_") for n in view.supervision_notices
        ],
        timeline=[
            pb.TimelineEntry(
                version=e.version,
                type=e.type,
                occurred_at=timestamp_out(e.occurred_at),
                actor=e.actor,
                correlation_id=e.correlation_id,
                details_json=json.dumps(e.details, ensure_ascii=False, sort_keys=True),
            )
            for e in view.timeline
        ],
        funding=[
            pb.FundingRequest(
                expenditure_id=f.expenditure_id,
                status=enum_out(f.status, pb.FundingStatus, "FUNDING_STATUS_"),
                amount_fen=f.amount_fen,
                payee_account=f.payee_account,
                purpose=f.purpose,
                reason=f.reason,
            )
            for f in view.funding
        ],
    )


def _satisfaction(value: int) -> int:
    """The resident's satisfaction: 1 (very unsatisfied) to 5 (very satisfied)."""
    if not 1 <= value <= 5:
        raise InvalidInput(f"satisfaction is from 1 to 5, not {value}")
    return value
