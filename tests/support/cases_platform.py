"""cases over real gRPC, with party_orgs as a real server seeded through its API: the
platform the tests of cases and of what reads cases' events build on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from civitas.cases.bootstrap import RunningCases, run_cases
from civitas.cases.grids import Assignment
from civitas.cases.v1 import cases_pb2 as pb
from civitas.cases.v1 import cases_pb2_grpc as pb_grpc
from civitas.chassis.auth import Role, TokenAuthority
from civitas.chassis.settings import ServiceSettings
from civitas.eventkit import ManualClock
from civitas.party_orgs.bootstrap import run_party_orgs
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as po_grpc
from tests.support.party_orgs_grpc import Client as PartyOrgsClient
from tests.support.party_orgs_grpc import seed

SECRET = "cases-secret-" + "q" * 40


@dataclass
class World:
    stub: pb_grpc.CasesServiceStub
    running: RunningCases
    clock: ManualClock
    authority: TokenAuthority

    def token(self, *roles: Role, scope: tuple[str, ...] = ("QH",)) -> list[tuple[str, str]]:
        subject = "cases" if Role.SERVICE in roles else "staff"  # a service token names one
        return [("authorization", f"Bearer {self.authority.mint(subject, roles, scope)}")]

    async def head(self) -> int:
        return await self.running.store.head_position()


def settings_for(service: str, tmp_path: Path, **extra: str) -> ServiceSettings:
    return ServiceSettings.from_env(
        service, {"CIVITAS_VAR_DIR": str(tmp_path), "CIVITAS_AUTH_SECRET": SECRET, **extra}
    )


@contextlib.asynccontextmanager
async def platform(
    tmp_path: Path,
    clock: ManualClock,
    party_orgs_up: bool = True,
) -> AsyncIterator[World]:
    async with contextlib.AsyncExitStack() as stack:
        address = "127.0.0.1:1"  # nothing listens there
        if party_orgs_up:
            po = await stack.enter_async_context(
                run_party_orgs(settings_for("party_orgs", tmp_path), clock=clock, port=0)
            )
            address = f"127.0.0.1:{po.server.port}"
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(address))
            await seed(
                PartyOrgsClient(
                    po_grpc.PartyOrgsServiceStub(channel), channel, TokenAuthority(SECRET), po.store
                )
            )
        cases = await stack.enter_async_context(
            run_cases(
                settings_for("cases", tmp_path, CIVITAS_PARTY_ORGS_ADDRESS=address),
                clock=clock,
                port=0,
                supervise_every=0.05,
            )
        )
        channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(f"127.0.0.1:{cases.server.port}")
        )
        yield World(pb_grpc.CasesServiceStub(channel), cases, clock, TokenAuthority(SECRET))


def registration(**overrides: object) -> pb.RegisterCaseRequest:
    fields = {
        "channel": pb.CHANNEL_HOTLINE_12345,
        "community_code": "QH-01-01",
        "address": "大光路12号3栋",
        "description": "楼道灯坏了一周",
        "urgency": pb.URGENCY_NORMAL,
        "resident_name": "周敏",
        "resident_phone": "138 0000 1111",
        **overrides,
    }
    return pb.RegisterCaseRequest(**fields)  # type: ignore[arg-type]


async def register(world: World, **overrides: object) -> str:
    reply = await world.stub.RegisterCase(
        registration(**overrides), metadata=world.token(Role.COMMUNITY_STAFF)
    )
    return reply.case.case_id


def stamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


HANDLER_PERSON = "member-5b0f2c1e-8f0a-4d8e-9c57-2a4c1d6e0b39"


class FakeGrids:
    """party_orgs' ResolveGrid as a table: the grid named, else the community's first,
    with 王芳 on its lead post. Set ``answer`` to have it answer that grid whatever it is
    asked, as a party_orgs that misbehaves might."""

    def __init__(self) -> None:
        self.answer: str | None = None

    async def resolve(
        self, community_code: str, address: str | None, grid_code: str | None
    ) -> Assignment:
        grid = self.answer or grid_code or f"{community_code}-G01"
        return Assignment(grid, None, "王芳", HANDLER_PERSON)


@contextlib.asynccontextmanager
async def cases_server(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Any]:
    settings = settings_for("cases", tmp_path)
    async with (
        run_cases(settings, clock=clock, port=0, grids=FakeGrids()) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}") as channel,
    ):
        yield running, pb_grpc.CasesServiceStub(channel)
