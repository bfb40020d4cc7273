"""The gRPC edge of volunteers: protobuf in, commands and queries, protobuf out."""

from __future__ import annotations

import re
from typing import Any

from civitas.chassis.convert import enum_in, enum_out, timestamp_in, timestamp_out, uuid_in
from civitas.chassis.interceptor import current_caller, current_principal
from civitas.chassis.requests import request_id_of
from civitas.errors import InvalidInput

from .application import PastAttendance, Volunteers
from .domain.activities import Activity, Brand
from .domain.volunteers import Volunteer
from .v1 import volunteers_pb2 as pb
from .v1 import volunteers_pb2_grpc as pb_grpc
from .views import VolunteerView, VolunteerViews

SOURCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}")
"""A record's id in an earlier system, as ImportActivity takes it."""


def source_id_in(value: str) -> str | None:
    if value and not SOURCE_ID.fullmatch(value):
        raise InvalidInput(
            f"source_id {value!r} is not 1-100 ASCII letters, digits and _.:@- "
            "(a letter or digit first)"
        )
    return value or None


def volunteer_message(view: VolunteerView) -> pb.Volunteer:
    volunteer = view.volunteer
    return pb.Volunteer(
        volunteer_id=volunteer.id,
        name=view.name,
        community_code=volunteer.community_code,
        skills=volunteer.skills,
        member_id=volunteer.member_id or "",
        suspended=volunteer.suspended,
        tenths_by_activity=volunteer.hours,
        total_tenths_of_hours=volunteer.total_tenths,
        certificates=[
            pb.Certificate(
                number=c.number,
                total_tenths_of_hours=c.total_tenths_of_hours,
                issued_at=timestamp_out(c.issued_at),
            )
            for c in volunteer.certificates
        ],
    )


class VolunteersServicer(pb_grpc.VolunteersServiceServicer):
    """Converts between protobuf and the application; nothing else."""

    def __init__(self, app: Volunteers, views: VolunteerViews) -> None:
        self.app = app
        self.views = views

    async def _volunteer_out(self, volunteer: Volunteer) -> pb.Volunteer:
        return volunteer_message(await self.views.seen(current_principal(), volunteer))

    @staticmethod
    def _activity_out(activity: Activity) -> pb.Activity:
        return pb.Activity(
            activity_id=activity.id,
            brand=enum_out(activity.brand, pb.Brand, "BRAND_"),
            title=activity.title,
            community_code=activity.community_code,
            starts_at=timestamp_out(activity.starts_at),
            ends_at=timestamp_out(activity.ends_at),
            capacity=activity.capacity,
            signed_up=activity.signed_up,
            roster=[
                pb.RosterEntry(
                    volunteer_id=volunteer_id,
                    cancelled=a.cancelled,
                    checked_in=timestamp_out(a.checked_in),
                    checked_out=timestamp_out(a.checked_out),
                    verified_tenths_of_hours=a.verified_tenths or 0,
                    declined_reason=a.declined or "",
                )
                for volunteer_id, a in sorted(activity.roster.items())
            ],
        )

    async def current(self, kind: str, object_id: str) -> Any:
        """What a command's reply named, as it is now: the reply to a repeated request id
        (chassis.requests)."""
        if kind == pb.Volunteer.DESCRIPTOR.full_name:
            return volunteer_message(await self.views.volunteer(current_principal(), object_id))
        if kind == pb.Activity.DESCRIPTOR.full_name:
            return self._activity_out(await self.views.activity(object_id))
        raise LookupError(f"volunteers replies name no {kind}")

    async def replay_IssueCertificate(self, named: list[str]) -> pb.IssueCertificateResponse:
        """A repeated IssueCertificate: the volunteer now, and the certificate it issued."""
        volunteer_id, number = named
        out = volunteer_message(await self.views.volunteer(current_principal(), volunteer_id))
        issued = next(c for c in out.certificates if c.number == number)
        return pb.IssueCertificateResponse(volunteer=out, certificate=issued)

    async def RegisterVolunteer(
        self, request: pb.RegisterVolunteerRequest, context: Any
    ) -> pb.RegisterVolunteerResponse:
        member_id = uuid_in(request.member_id, "member_id") if request.member_id else None
        volunteer = await self.app.register(
            current_caller(),
            request.name,
            request.phone,
            request.community_code,
            list(request.skills),
            member_id,
            request_id_of(request),
        )
        return pb.RegisterVolunteerResponse(volunteer=await self._volunteer_out(volunteer))

    async def SuspendVolunteer(
        self, request: pb.SuspendVolunteerRequest, context: Any
    ) -> pb.SuspendVolunteerResponse:
        volunteer = await self.app.suspend(
            current_caller(), uuid_in(request.volunteer_id, "volunteer_id"), request.reason
        )
        return pb.SuspendVolunteerResponse(volunteer=await self._volunteer_out(volunteer))

    async def ReinstateVolunteer(
        self, request: pb.ReinstateVolunteerRequest, context: Any
    ) -> pb.ReinstateVolunteerResponse:
        volunteer = await self.app.reinstate(
            current_caller(), uuid_in(request.volunteer_id, "volunteer_id")
        )
        return pb.ReinstateVolunteerResponse(volunteer=await self._volunteer_out(volunteer))

    async def CreateActivity(
        self, request: pb.CreateActivityRequest, context: Any
    ) -> pb.CreateActivityResponse:
        for field in ("starts_at", "ends_at"):
            if not request.HasField(field):
                raise InvalidInput(f"{field} is required")
        activity = await self.app.create_activity(
            current_caller(),
            enum_in(request.brand, pb.Brand, "BRAND_", Brand, "brand"),
            request.title,
            request.organizer,
            request.community_code,
            timestamp_in(request.starts_at),
            timestamp_in(request.ends_at),
            request.capacity,
            list(request.skills),
            request_id_of(request),
        )
        return pb.CreateActivityResponse(activity=self._activity_out(activity))

    def _ids(self, request: Any) -> tuple[str, str]:
        return (
            uuid_in(request.activity_id, "activity_id"),
            uuid_in(request.volunteer_id, "volunteer_id"),
        )

    async def SignUp(self, request: pb.SignUpRequest, context: Any) -> pb.SignUpResponse:
        activity = await self.app.sign_up(current_caller(), *self._ids(request))
        return pb.SignUpResponse(activity=self._activity_out(activity))

    async def CancelSignUp(
        self, request: pb.CancelSignUpRequest, context: Any
    ) -> pb.CancelSignUpResponse:
        activity = await self.app.cancel(current_caller(), *self._ids(request))
        return pb.CancelSignUpResponse(activity=self._activity_out(activity))

    async def CheckIn(self, request: pb.CheckInRequest, context: Any) -> pb.CheckInResponse:
        activity = await self.app.check_in(current_caller(), *self._ids(request))
        return pb.CheckInResponse(activity=self._activity_out(activity))

    async def CheckOut(self, request: pb.CheckOutRequest, context: Any) -> pb.CheckOutResponse:
        activity = await self.app.check_out(current_caller(), *self._ids(request))
        return pb.CheckOutResponse(activity=self._activity_out(activity))

    async def VerifyHours(
        self, request: pb.VerifyHoursRequest, context: Any
    ) -> pb.VerifyHoursResponse:
        activity = await self.app.verify_hours(
            current_caller(), *self._ids(request), request.tenths_of_hours
        )
        return pb.VerifyHoursResponse(activity=self._activity_out(activity))

    async def DeclineHours(
        self, request: pb.DeclineHoursRequest, context: Any
    ) -> pb.DeclineHoursResponse:
        activity = await self.app.decline_hours(
            current_caller(), *self._ids(request), request.reason
        )
        return pb.DeclineHoursResponse(activity=self._activity_out(activity))

    async def IssueCertificate(
        self, request: pb.IssueCertificateRequest, context: Any
    ) -> pb.IssueCertificateResponse:
        volunteer = await self.app.issue_certificate(
            current_caller(), uuid_in(request.volunteer_id, "volunteer_id")
        )
        out = await self._volunteer_out(volunteer)
        return pb.IssueCertificateResponse(volunteer=out, certificate=out.certificates[-1])

    async def ImportActivity(
        self, request: pb.ImportActivityRequest, context: Any
    ) -> pb.ImportActivityResponse:
        spec = request.activity
        for field in ("starts_at", "ends_at"):
            if not spec.HasField(field):
                raise InvalidInput(f"activity.{field} is required")
        if spec.request_id:  # the import's own request_id names the request
            raise InvalidInput("activity.request_id is not read: give the import's request_id")
        records = []
        for n, record in enumerate(request.attendance):
            if not (record.HasField("checked_in_at") and record.HasField("checked_out_at")):
                raise InvalidInput(f"attendance[{n}] needs checked_in_at and checked_out_at")
            records.append(
                PastAttendance(
                    uuid_in(record.volunteer_id, f"attendance[{n}].volunteer_id"),
                    timestamp_in(record.checked_in_at),
                    timestamp_in(record.checked_out_at),
                    record.verified_tenths_of_hours or None,
                    record.declined_reason or None,
                )
            )
        activity = await self.app.import_activity(
            current_caller(),
            enum_in(spec.brand, pb.Brand, "BRAND_", Brand, "activity.brand"),
            spec.title,
            spec.organizer,
            spec.community_code,
            timestamp_in(spec.starts_at),
            timestamp_in(spec.ends_at),
            spec.capacity,
            list(spec.skills),
            records,
            source_id_in(request.source_id),
            request_id_of(request),
        )
        return pb.ImportActivityResponse(activity=self._activity_out(activity))

    async def GetVolunteer(
        self, request: pb.GetVolunteerRequest, context: Any
    ) -> pb.GetVolunteerResponse:
        volunteer_id = uuid_in(request.volunteer_id, "volunteer_id")
        view = await self.views.volunteer(current_principal(), volunteer_id)
        return pb.GetVolunteerResponse(volunteer=volunteer_message(view))

    async def GetActivity(
        self, request: pb.GetActivityRequest, context: Any
    ) -> pb.GetActivityResponse:
        activity = await self.views.activity(uuid_in(request.activity_id, "activity_id"))
        return pb.GetActivityResponse(activity=self._activity_out(activity))
