"""The gRPC edge of party_orgs: protobuf in, commands and queries, protobuf out."""

from __future__ import annotations

import re
from typing import Any

from civitas.chassis.convert import enum_in, enum_out, timestamp_in, timestamp_out, uuid_in
from civitas.chassis.interceptor import current_caller, current_principal
from civitas.errors import InvalidInput
from civitas.geography import UnitKind, parse_unit_code, unit_code

from .application import PartyOrgs
from .domain.members import AppraisalRating, CardActivityKind, Member
from .domain.orgs import OrgKind, PartyOrg, SeatRole
from .domain.pairings import Pairing
from .domain.units import AdminUnit
from .v1 import party_orgs_pb2 as pb
from .v1 import party_orgs_pb2_grpc as pb_grpc
from .views import PartyOrgViews

KEY = (re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}"), "1-100 ASCII letters, digits and _.:@-")
"""A card activity's or a feedback's id, as its writer chose it."""
MEMBER_NUMBER = (
    re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,39}"),
    "1-40 ASCII letters, digits and _.:-",
)


def unit_code_in(value: str, field: str, kind: UnitKind | None = None) -> str:
    """A unit code a request names, checked whole (ASCII letters and digits only: a
    look-alike makes no code), and of the kind asked for, if any."""
    if not value:
        raise InvalidInput(f"{field} is required: a unit code such as QH-03-07")
    if kind is not None:
        return unit_code(value, field, kind)
    parse_unit_code(value)
    return value


def key_in(value: str, field: str, shape: tuple[re.Pattern[str], str] = KEY) -> str:
    """A key the caller chooses (an activity's or a feedback's id, a member number)."""
    pattern, described = shape
    if not value:
        raise InvalidInput(f"{field} is required")
    if not pattern.fullmatch(value):
        raise InvalidInput(f"{field} {value!r} is not {described} (a letter or digit first)")
    return value


def pairing_to_proto(pairing: Pairing) -> pb.Pairing:
    return pb.Pairing(
        pairing_id=pairing.id,
        organ_org_id=pairing.organ_org_id,
        community_org_id=pairing.community_org_id,
        formed_at=timestamp_out(pairing.formed_at) if pairing.formed_at else None,
        ended=not pairing.active,
        end_reason=pairing.end_reason or "",
    )


class PartyOrgsServicer(pb_grpc.PartyOrgsServiceServicer):
    """Converts between protobuf and the application; nothing else."""

    def __init__(self, app: PartyOrgs, views: PartyOrgViews) -> None:
        self.app = app
        self.views = views

    async def _member_to_proto(self, member: Member) -> pb.Member:
        transfer = member.transfer
        return pb.Member(
            member_id=member.id,
            member_number=member.member_number,
            name=await self.views.member_name(current_principal(), member),
            org_id=member.org_id,
            working=member.working,
            employer=member.employer or "",
            residence_community_code=member.residence_community or "",
            pending_transfer=pb.PendingTransfer(
                to_org_id=transfer.to_org_id,
                letter_expires_at=timestamp_out(transfer.letter_expires_at),
            )
            if transfer
            else None,
            activities=[
                pb.CardActivity(
                    activity_id=a.activity_id,
                    kind=enum_out(a.kind, pb.CardActivityKind, "CARD_ACTIVITY_KIND_"),
                    description=a.description,
                    tenths_of_hours=a.tenths_of_hours,
                    occurred_at=timestamp_out(a.occurred_at),
                )
                for a in member.activities.values()
            ],
            feedback=[
                pb.ResidentFeedback(
                    feedback_id=f.feedback_id,
                    rating=f.rating,
                    comment=f.comment,
                    recorded_at=timestamp_out(f.recorded_at),
                )
                for f in member.feedback.values()
            ],
            appraisals=[
                pb.Appraisal(year=y, rating=enum_out(r, pb.AppraisalRating, "APPRAISAL_RATING_"))
                for y, r in sorted(member.appraisals.items())
            ],
        )

    async def _unit_out(self, unit: AdminUnit) -> pb.AdminUnit:
        return pb.AdminUnit(
            code=unit.id,
            kind=enum_out(unit.kind, pb.AdminUnitKind, "ADMIN_UNIT_KIND_"),
            name=unit.name,
            parent_code=unit.parent_code or "",
            population=unit.population,
            addresses=unit.addresses,
            service_centres=unit.service_centres,
            posts=[
                pb.GridPost(
                    post=p.post,
                    holder=holder.name,
                    member_id=p.member_id or "",
                    duty=p.duty,
                    person_id=holder.person_id,
                )
                for p in unit.posts.values()
                for holder in [await self.views.holder(current_principal(), p, unit.id)]
            ],
        )

    async def _org_out(self, org: PartyOrg) -> pb.PartyOrg:
        return pb.PartyOrg(
            org_id=org.id,
            kind=enum_out(org.kind, pb.PartyOrgKind, "PARTY_ORG_KIND_"),
            name=org.name,
            parent_id=org.parent_id or "",
            unit_code=org.unit_code,
            seats=[
                pb.CommitteeSeat(
                    role=enum_out(s.role, pb.SeatRole, "SEAT_ROLE_"),
                    holder=holder.name,
                    member_id=s.member_id or "",
                    stationed_unit=s.stationed_unit or "",
                    person_id=holder.person_id,
                )
                for s in org.seats
                for holder in [await self.views.holder(current_principal(), s, org.unit_code)]
            ],
            member_count=len(org.members),
            child_ids=sorted(org.children),
            dissolved=org.dissolved,
        )

    async def current(self, kind: str, object_id: str) -> Any:
        """What a command's reply named, as it is now: the reply to a repeated request id
        (chassis.requests)."""
        if kind == pb.AdminUnit.DESCRIPTOR.full_name:
            return await self._unit_out(await self.views.unit(object_id))
        if kind == pb.PartyOrg.DESCRIPTOR.full_name:
            return await self._org_out(await self.views.org(object_id))
        if kind == pb.Member.DESCRIPTOR.full_name:
            return await self._member_to_proto(await self.views.member(object_id))
        if kind == pb.Pairing.DESCRIPTOR.full_name:
            return pairing_to_proto(await self.views.pairing(object_id))
        raise LookupError(f"party_orgs replies name no {kind}")

    # -- units ------------------------------------------------------------------

    async def RegisterAdminUnit(
        self, request: pb.RegisterAdminUnitRequest, context: Any
    ) -> pb.RegisterAdminUnitResponse:
        unit = await self.app.register_unit(
            current_caller(),
            unit_code_in(request.code, "code"),
            request.name,
            request.population,
            list(request.addresses),
        )
        return pb.RegisterAdminUnitResponse(unit=await self._unit_out(unit))

    async def RenameAdminUnit(
        self, request: pb.RenameAdminUnitRequest, context: Any
    ) -> pb.RenameAdminUnitResponse:
        code = unit_code_in(request.code, "code")
        unit = await self.app.rename_unit(current_caller(), code, request.name)
        return pb.RenameAdminUnitResponse(unit=await self._unit_out(unit))

    async def OpenServiceCentre(
        self, request: pb.OpenServiceCentreRequest, context: Any
    ) -> pb.OpenServiceCentreResponse:
        street = unit_code_in(request.street_code, "street_code")
        unit = await self.app.open_service_centre(current_caller(), street, request.name)
        return pb.OpenServiceCentreResponse(unit=await self._unit_out(unit))

    async def AssignGridPost(
        self, request: pb.AssignGridPostRequest, context: Any
    ) -> pb.AssignGridPostResponse:
        grid = unit_code_in(request.grid_code, "grid_code")
        member_id = uuid_in(request.member_id, "member_id") if request.member_id else None
        unit = await self.app.assign_post(
            current_caller(),
            grid,
            request.post,
            request.holder,
            member_id,
            request.duty,
        )
        return pb.AssignGridPostResponse(unit=await self._unit_out(unit))

    async def VacateGridPost(
        self, request: pb.VacateGridPostRequest, context: Any
    ) -> pb.VacateGridPostResponse:
        grid = unit_code_in(request.grid_code, "grid_code")
        unit = await self.app.vacate_post(current_caller(), grid, request.post)
        return pb.VacateGridPostResponse(unit=await self._unit_out(unit))

    async def GetAdminUnit(
        self, request: pb.GetAdminUnitRequest, context: Any
    ) -> pb.GetAdminUnitResponse:
        code = unit_code_in(request.code, "code")
        unit = await self.views.unit(code)
        return pb.GetAdminUnitResponse(unit=await self._unit_out(unit))

    async def ListAdminUnits(
        self, request: pb.ListAdminUnitsRequest, context: Any
    ) -> pb.ListAdminUnitsResponse:
        parent = unit_code_in(request.parent_code, "parent_code") if request.parent_code else None
        found = await self.views.units_under(parent)
        return pb.ListAdminUnitsResponse(units=[await self._unit_out(u) for u in found])

    async def ResolveGrid(
        self, request: pb.ResolveGridRequest, context: Any
    ) -> pb.ResolveGridResponse:
        community = unit_code_in(request.community_code, "community_code", UnitKind.COMMUNITY)
        target = request.WhichOneof("target")
        grid_code = (
            unit_code_in(request.grid_code, "grid_code", UnitKind.GRID)
            if target == "grid_code"
            else None
        )
        address = request.address if target == "address" else ""
        found = await self.views.resolve_grid(community, grid_code, address)
        grid = await self._unit_out(found.grid)
        return pb.ResolveGridResponse(
            grid=grid,
            grid_branch=await self._org_out(found.branch) if found.branch else None,
            post_holders=grid.posts,
        )

    # -- orgs -----------------------------------------------------------------------

    async def FoundPartyOrg(
        self, request: pb.FoundPartyOrgRequest, context: Any
    ) -> pb.FoundPartyOrgResponse:
        kind = enum_in(request.kind, pb.PartyOrgKind, "PARTY_ORG_KIND_", OrgKind, "kind")
        parent = uuid_in(request.parent_id, "parent_id") if request.parent_id else None
        unit_code = unit_code_in(request.unit_code, "unit_code")
        org = await self.app.found_org(current_caller(), kind, request.name, parent, unit_code)
        return pb.FoundPartyOrgResponse(org=await self._org_out(org))

    async def MovePartyOrg(
        self, request: pb.MovePartyOrgRequest, context: Any
    ) -> pb.MovePartyOrgResponse:
        org = await self.app.move_org(
            current_caller(),
            uuid_in(request.org_id, "org_id"),
            uuid_in(request.new_parent_id, "new_parent_id"),
        )
        return pb.MovePartyOrgResponse(org=await self._org_out(org))

    async def SeatCommitteeMember(
        self, request: pb.SeatCommitteeMemberRequest, context: Any
    ) -> pb.SeatCommitteeMemberResponse:
        seat = request.seat
        role = enum_in(seat.role, pb.SeatRole, "SEAT_ROLE_", SeatRole, "seat.role")
        member_id = uuid_in(seat.member_id, "seat.member_id") if seat.member_id else None
        org = await self.app.seat(
            current_caller(),
            uuid_in(request.org_id, "org_id"),
            role,
            seat.holder,
            member_id,
            seat.stationed_unit or None,
        )
        return pb.SeatCommitteeMemberResponse(org=await self._org_out(org))

    async def UnseatCommitteeMember(
        self, request: pb.UnseatCommitteeMemberRequest, context: Any
    ) -> pb.UnseatCommitteeMemberResponse:
        role = enum_in(request.role, pb.SeatRole, "SEAT_ROLE_", SeatRole, "role")
        if not (request.holder or request.person_id):
            raise InvalidInput("name the holder, or give their person_id")
        org = await self.app.unseat(
            current_caller(),
            uuid_in(request.org_id, "org_id"),
            role,
            request.holder,
            uuid_in(request.person_id, "person_id") if request.person_id else None,
        )
        return pb.UnseatCommitteeMemberResponse(org=await self._org_out(org))

    async def DissolvePartyOrg(
        self, request: pb.DissolvePartyOrgRequest, context: Any
    ) -> pb.DissolvePartyOrgResponse:
        org = await self.app.dissolve_org(
            current_caller(), uuid_in(request.org_id, "org_id"), request.reason
        )
        return pb.DissolvePartyOrgResponse(org=await self._org_out(org))

    async def GetPartyOrg(
        self, request: pb.GetPartyOrgRequest, context: Any
    ) -> pb.GetPartyOrgResponse:
        org_id = uuid_in(request.org_id, "org_id")
        org = await self.views.org(org_id)
        return pb.GetPartyOrgResponse(org=await self._org_out(org))

    async def WalkOrgTree(
        self, request: pb.WalkOrgTreeRequest, context: Any
    ) -> pb.WalkOrgTreeResponse:
        root = uuid_in(request.root_id, "root_id") if request.root_id else None
        nodes = await self.views.walk(root, request.max_depth)
        return pb.WalkOrgTreeResponse(
            nodes=[pb.OrgTreeNode(org=await self._org_out(o), depth=d) for o, d in nodes]
        )

    # -- members --------------------------------------------------------------------

    async def AdmitMember(
        self, request: pb.AdmitMemberRequest, context: Any
    ) -> pb.AdmitMemberResponse:
        member = await self.app.admit_member(
            current_caller(),
            key_in(request.member_number, "member_number", MEMBER_NUMBER),
            request.name,
            uuid_in(request.org_id, "org_id"),
            request.working,
            request.employer or None,
        )
        return pb.AdmitMemberResponse(member=await self._member_to_proto(member))

    async def StartMemberTransfer(
        self, request: pb.StartMemberTransferRequest, context: Any
    ) -> pb.StartMemberTransferResponse:
        member = await self.app.start_transfer(
            current_caller(),
            uuid_in(request.member_id, "member_id"),
            uuid_in(request.to_org_id, "to_org_id"),
        )
        return pb.StartMemberTransferResponse(member=await self._member_to_proto(member))

    async def ReceiveMemberTransfer(
        self, request: pb.ReceiveMemberTransferRequest, context: Any
    ) -> pb.ReceiveMemberTransferResponse:
        member = await self.app.receive_transfer(
            current_caller(), uuid_in(request.member_id, "member_id")
        )
        return pb.ReceiveMemberTransferResponse(member=await self._member_to_proto(member))

    async def CancelMemberTransfer(
        self, request: pb.CancelMemberTransferRequest, context: Any
    ) -> pb.CancelMemberTransferResponse:
        member = await self.app.cancel_transfer(
            current_caller(), uuid_in(request.member_id, "member_id"), request.reason
        )
        return pb.CancelMemberTransferResponse(member=await self._member_to_proto(member))

    async def ReportToCommunity(
        self, request: pb.ReportToCommunityRequest, context: Any
    ) -> pb.ReportToCommunityResponse:
        member = await self.app.report_to_community(
            current_caller(),
            uuid_in(request.member_id, "member_id"),
            unit_code_in(request.community_code, "community_code", UnitKind.COMMUNITY),
        )
        return pb.ReportToCommunityResponse(member=await self._member_to_proto(member))

    async def RecordCardActivity(
        self, request: pb.RecordCardActivityRequest, context: Any
    ) -> pb.RecordCardActivityResponse:
        activity = request.activity
        if not request.HasField("activity"):
            raise InvalidInput("activity is required")
        kind = enum_in(
            activity.kind,
            pb.CardActivityKind,
            "CARD_ACTIVITY_KIND_",
            CardActivityKind,
            "activity.kind",
        )
        if not activity.HasField("occurred_at"):
            raise InvalidInput("activity.occurred_at is required")
        member = await self.app.record_activity(
            current_caller(),
            uuid_in(request.member_id, "member_id"),
            key_in(activity.activity_id, "activity.activity_id"),
            kind,
            activity.description,
            activity.tenths_of_hours,
            timestamp_in(activity.occurred_at),
        )
        return pb.RecordCardActivityResponse(member=await self._member_to_proto(member))

    async def RecordResidentFeedback(
        self, request: pb.RecordResidentFeedbackRequest, context: Any
    ) -> pb.RecordResidentFeedbackResponse:
        if not request.HasField("feedback"):
            raise InvalidInput("feedback is required")
        feedback = request.feedback
        member = await self.app.record_feedback(
            current_caller(),
            uuid_in(request.member_id, "member_id"),
            key_in(feedback.feedback_id, "feedback.feedback_id"),
            feedback.rating,
            feedback.comment,
        )
        return pb.RecordResidentFeedbackResponse(member=await self._member_to_proto(member))

    async def RateAppraisal(
        self, request: pb.RateAppraisalRequest, context: Any
    ) -> pb.RateAppraisalResponse:
        if not request.HasField("appraisal"):
            raise InvalidInput("appraisal is required")
        rating = enum_in(
            request.appraisal.rating,
            pb.AppraisalRating,
            "APPRAISAL_RATING_",
            AppraisalRating,
            "appraisal.rating",
        )
        member = await self.app.rate_appraisal(
            current_caller(),
            uuid_in(request.member_id, "member_id"),
            request.appraisal.year,
            rating,
        )
        return pb.RateAppraisalResponse(member=await self._member_to_proto(member))

    async def GetMember(self, request: pb.GetMemberRequest, context: Any) -> pb.GetMemberResponse:
        member_id = uuid_in(request.member_id, "member_id")
        member = await self.views.member(member_id)
        return pb.GetMemberResponse(member=await self._member_to_proto(member))

    # -- pairings -------------------------------------------------------------------

    async def FormPairing(
        self, request: pb.FormPairingRequest, context: Any
    ) -> pb.FormPairingResponse:
        pairing = await self.app.form_pairing(
            current_caller(),
            uuid_in(request.organ_org_id, "organ_org_id"),
            uuid_in(request.community_org_id, "community_org_id"),
        )
        return pb.FormPairingResponse(pairing=pairing_to_proto(pairing))

    async def EndPairing(
        self, request: pb.EndPairingRequest, context: Any
    ) -> pb.EndPairingResponse:
        pairing = await self.app.end_pairing(
            current_caller(), uuid_in(request.pairing_id, "pairing_id"), request.reason
        )
        return pb.EndPairingResponse(pairing=pairing_to_proto(pairing))

    async def ListPairings(
        self, request: pb.ListPairingsRequest, context: Any
    ) -> pb.ListPairingsResponse:
        org_id = uuid_in(request.org_id, "org_id") if request.org_id else None
        found = await self.views.pairings_of(org_id)
        return pb.ListPairingsResponse(pairings=[pairing_to_proto(p) for p in found])
