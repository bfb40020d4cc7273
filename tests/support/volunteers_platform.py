"""volunteers over real gRPC with party_orgs as a real server seeded through its API: the
platform the tests of volunteers, and of erasure and party_orgs' rules that need both,
build on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from civitas.chassis.auth import Role, TokenAuthority
from civitas.chassis.settings import ServiceSettings
from civitas.eventkit import ManualClock
from civitas.party_orgs.bootstrap import RunningPartyOrgs, run_party_orgs
from civitas.party_orgs.v1 import party_orgs_pb2 as po
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as po_grpc
from civitas.volunteers.bootstrap import RunningVolunteers, run_volunteers
from civitas.volunteers.domain.volunteers import volunteer_id_for_member
from civitas.volunteers.v1 import volunteers_pb2 as pb
from civitas.volunteers.v1 import volunteers_pb2_grpc as pb_grpc
from tests.support.party_orgs_grpc import Client as PartyOrgsClient
from tests.support.party_orgs_grpc import seed

SECRET = "volunteers-secret-" + "v" * 40


@dataclass
class World:
    stub: pb_grpc.VolunteersServiceStub
    party_orgs: po_grpc.PartyOrgsServiceStub
    volunteers: RunningVolunteers
    party: RunningPartyOrgs
    clock: ManualClock
    ids: dict[str, str]
    authority: TokenAuthority

    def token(self, *roles: Role, scope: tuple[str, ...] = ("QH",)) -> list[tuple[str, str]]:
        subject = "cases" if Role.SERVICE in roles else "staff"  # a service token names one
        return [("authorization", f"Bearer {self.authority.mint(subject, roles, scope)}")]


def settings_for(
    service: str, tmp_path: Path, extra: dict[str, str] | None = None
) -> ServiceSettings:
    env = {"CIVITAS_VAR_DIR": str(tmp_path), "CIVITAS_AUTH_SECRET": SECRET, **(extra or {})}
    return ServiceSettings.from_env(service, env)


@contextlib.asynccontextmanager
async def platform(
    tmp_path: Path, clock: ManualClock, seeded: bool = True, extra: dict[str, str] | None = None
) -> AsyncIterator[World]:
    async with contextlib.AsyncExitStack() as stack:
        party = await stack.enter_async_context(
            run_party_orgs(settings_for("party_orgs", tmp_path, extra), clock=clock, port=0)
        )
        po_channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(f"127.0.0.1:{party.server.port}")
        )
        po_stub = po_grpc.PartyOrgsServiceStub(po_channel)
        ids = (
            await seed(PartyOrgsClient(po_stub, po_channel, TokenAuthority(SECRET), party.store))
            if seeded
            else {}
        )
        settings = settings_for("volunteers", tmp_path, extra)
        settings.peers["party_orgs"] = f"127.0.0.1:{party.server.port}"
        volunteers = await stack.enter_async_context(run_volunteers(settings, clock=clock, port=0))
        channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(f"127.0.0.1:{volunteers.server.port}")
        )
        yield World(
            pb_grpc.VolunteersServiceStub(channel),
            po_stub,
            volunteers,
            party,
            clock,
            ids,
            TokenAuthority(SECRET),
        )


def stamp(moment: object) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)  # type: ignore[arg-type]
    return value


async def report(world: World) -> str:
    member = world.ids["member"]  # a working member of the seed
    await world.party_orgs.ReportToCommunity(
        po.ReportToCommunityRequest(member_id=member, community_code="QH-01-01"),
        metadata=world.token(Role.DISTRICT_ADMIN),
    )
    return member


async def profile_events(world: World, member_id: str) -> list[str]:
    stream = f"volunteer-{volunteer_id_for_member(member_id)}"
    return [e.type for e in await world.volunteers.store.read_stream(stream)]


async def attended_activity(world: World, volunteer_id: str) -> str:
    """A new activity the volunteer signs up for, attends and has 2.5 hours verified
    for (volunteers' ``HoursVerified``); its id."""
    staff = world.token(Role.VOLUNTEER_COORDINATOR, scope=("QH-01-01",))
    start = world.clock.now() + timedelta(hours=1)
    activity = (
        await world.stub.CreateActivity(
            pb.CreateActivityRequest(
                brand=pb.BRAND_ELDERLY_DINING,
                title="银发餐桌",
                organizer="大光路社区",
                community_code="QH-01-01",
                starts_at=stamp(start),
                ends_at=stamp(start + timedelta(hours=3)),
                capacity=10,
            ),
            metadata=staff,
        )
    ).activity
    ids = {"activity_id": activity.activity_id, "volunteer_id": volunteer_id}
    await world.stub.SignUp(pb.SignUpRequest(**ids), metadata=staff)
    world.clock.advance(timedelta(hours=1))
    await world.stub.CheckIn(pb.CheckInRequest(**ids), metadata=staff)
    world.clock.advance(timedelta(hours=2, minutes=30))
    await world.stub.CheckOut(pb.CheckOutRequest(**ids), metadata=staff)
    await world.stub.VerifyHours(pb.VerifyHoursRequest(**ids, tenths_of_hours=25), metadata=staff)
    return activity.activity_id
