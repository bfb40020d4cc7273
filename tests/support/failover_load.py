"""Steady load through the gRPC API while faults are injected: what each client was
answered, what failed on the way, and how long each client went without an answer.

Each client runs its own chain of commands on aggregates no other client touches
(its own cases, its own direction of transfer, its own activities), so that the only
errors it can meet are the platform's, never another client's conflict. A command
carries a request id (or a transfer its idempotency key) chosen before the first
attempt; after an error the client sends the very same request again until it is
answered, which is what makes "answered once, stored once" checkable."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from civitas.cases.v1 import cases_pb2 as cpb
from civitas.cases.v1 import cases_pb2_grpc as cpb_grpc
from civitas.chassis.auth import Role, TokenAuthority
from civitas.funds.v1 import funds_pb2 as fpb
from civitas.funds.v1 import funds_pb2_grpc as fpb_grpc
from civitas.party_orgs.v1 import party_orgs_pb2 as ppb
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as ppb_grpc
from civitas.volunteers.v1 import volunteers_pb2 as vpb
from civitas.volunteers.v1 import volunteers_pb2_grpc as vpb_grpc

COMMUNITIES = ("QH-01-01", "QH-01-02")
GIVE_UP_SECONDS = 120.0
"""A command still unanswered after this long fails the load (a bound far above the one
the test asserts, so that the test reports the window instead of hanging)."""


def fund_of(community: str) -> str:
    return f"fund:{community}:special"


@dataclass(frozen=True)
class Answered:
    """A command the platform answered OK: its method, its request id (or idempotency
    key), and the id of what it made or changed."""

    method: str
    key: str
    subject: str
    retried: bool = False  # sent again after a failed attempt


@dataclass(frozen=True)
class Failure:
    client: str
    method: str
    code: str
    at: float  # seconds since the load began
    details: str


@dataclass(frozen=True)
class Window:
    """From a client's first failed attempt at a command to the attempt answered OK."""

    client: str
    method: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Load:
    """The clients' record, shared by them; ``at()`` is the load's clock. ``refused``
    holds the commands whose retry was refused after an earlier attempt had failed."""

    began: float = field(default_factory=time.monotonic)
    answered: list[Answered] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    refused: list[Answered] = field(default_factory=list)

    def at(self) -> float:
        return time.monotonic() - self.began

    async def call(
        self, client: str, method: str, send: Callable[[Any], Awaitable[Any]], request: Any
    ) -> Any | None:
        """``send(request)`` until it is answered, recording each failure and the
        client's window without an answer: the reply, or None when it was refused
        (any status but UNAVAILABLE: sending it again would change nothing)."""
        first: float | None = None
        while True:
            try:
                reply = await send(request)
            except grpc.aio.AioRpcError as failed:
                now = self.at()
                first = now if first is None else first
                code = failed.code().name
                self.failures.append(Failure(client, method, code, now, failed.details() or ""))
                if code != "UNAVAILABLE" or now - first > GIVE_UP_SECONDS:
                    self.windows.append(Window(client, method, first, now))
                    return None
                await asyncio.sleep(0.2)
                continue
            if first is not None:
                self.windows.append(Window(client, method, first, self.at()))
            return reply


class _Bearer(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """The token on every call, and 10 s to answer."""

    def __init__(self, token: str) -> None:
        self.metadata = (("authorization", f"Bearer {token}"),)

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details._replace(metadata=self.metadata, timeout=10), request)


def _balanced(target: str, token: str) -> grpc.aio.Channel:
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    options = [("grpc.enable_retries", 0), ("grpc.service_config", json.dumps(config))]
    bearer = [_Bearer(token)]
    return grpc.aio.insecure_channel(target, options=options, interceptors=bearer)  # type: ignore[arg-type]


def admin_token(secret: str) -> str:
    return TokenAuthority(secret).mint("failover-load", [Role.DISTRICT_ADMIN], ["QH"])


class Clients:
    """Stubs of every service the load calls, balanced over the replicas a target lists,
    and the seed they need. gRPC never resends a call here by itself (the chassis
    channel would, for safe commands): the load resends it, the same request, so that
    every failed attempt is seen, counted and known to have been retried."""

    def __init__(self, targets: Mapping[str, str], secret: str) -> None:
        token = admin_token(secret)
        self.channels = [
            _balanced(targets[s], token) for s in ("party_orgs", "cases", "funds", "volunteers")
        ]
        party, cases, funds, volunteers = self.channels
        self.party_orgs = ppb_grpc.PartyOrgsServiceStub(party)
        self.cases = cpb_grpc.CasesServiceStub(cases)
        self.funds = fpb_grpc.FundsServiceStub(funds)
        self.volunteers = vpb_grpc.VolunteersServiceStub(volunteers)
        self.volunteer_ids: list[str] = []

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close(None)

    async def seed(self) -> None:
        """Two communities with a grid and its post holder (cases are dispatched to it),
        their special funds allocated, and two volunteers."""
        for code in ("QH", "QH-01", *COMMUNITIES):
            await self.party_orgs.RegisterAdminUnit(
                ppb.RegisterAdminUnitRequest(code=code, name=code)
            )
        for community in COMMUNITIES:
            grid = f"{community}-G01"
            await self.party_orgs.RegisterAdminUnit(
                ppb.RegisterAdminUnitRequest(code=grid, name="第一网格", addresses=["大光路12号"])
            )
            await self.party_orgs.AssignGridPost(
                ppb.AssignGridPostRequest(grid_code=grid, post="网格长", holder="王芳", duty="巡查")
            )
            year = datetime.now(UTC).year
            await self.funds.AllocateYear(
                fpb.AllocateYearRequest(community_code=community, year=year)
            )
        for n in range(2):
            registered = await self.volunteers.RegisterVolunteer(
                vpb.RegisterVolunteerRequest(
                    name=f"志愿者{n}", phone=f"139 0000 000{n}", community_code=COMMUNITIES[0]
                )
            )
            self.volunteer_ids.append(registered.volunteer.volunteer_id)


def new_key() -> str:
    return str(uuid.uuid4())


def registration(description: str = "楼道灯坏了") -> cpb.RegisterCaseRequest:
    """A resident's request by the hotline, in the first community, under a new
    request id."""
    return cpb.RegisterCaseRequest(
        channel=cpb.CHANNEL_HOTLINE_12345,
        community_code=COMMUNITIES[0],
        address="大光路12号3栋",
        description=description,
        urgency=cpb.URGENCY_NORMAL,
        resident_name="周敏",
        resident_phone="138 0000 1111",
        request_id=new_key(),
    )


async def cases_client(load: Load, clients: Clients, name: str, stop: asyncio.Event) -> None:
    """Register a case, classify, file and dispatch it; again until ``stop``."""
    s = clients.cases
    while not stop.is_set():
        registered = await _command(load, name, "RegisterCase", s.RegisterCase, registration())
        if registered is None:
            continue
        case_id = registered.case.case_id
        for method, request in (
            (
                "ClassifyCase",
                cpb.ClassifyCaseRequest(
                    case_id=case_id, category="市政设施", urgency=cpb.URGENCY_NORMAL
                ),
            ),
            ("FileCase", cpb.FileCaseRequest(case_id=case_id)),
            ("DispatchCase", cpb.DispatchCaseRequest(case_id=case_id)),
        ):
            request.request_id = new_key()
            if await _command(load, name, method, getattr(s, method), request, case_id) is None:
                break  # the case is not where the next step needs it


async def funds_client(load: Load, clients: Clients, name: str, stop: asyncio.Event) -> None:
    """Move 1 yuan from one community's special fund to the other's and back, again
    until ``stop`` (one client: both accounts are its own, so no conflict is another
    client's)."""
    paying, receiving = (fund_of(c) for c in COMMUNITIES)
    while not stop.is_set():
        moving = fpb.TransferRequest(
            idempotency_key=new_key(),
            from_account=paying,
            to_account=receiving,
            amount_fen=100,
            memo="调剂",
        )
        await _command(load, name, "Transfer", clients.funds.Transfer, moving)
        paying, receiving = receiving, paying


async def hours_client(load: Load, clients: Clients, name: str, stop: asyncio.Event) -> None:
    """Import yesterday's activity with both volunteers' verified hours, again until
    ``stop``."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    while not stop.is_set():
        activity = vpb.CreateActivityRequest(
            brand=vpb.BRAND_ELDERLY_DINING,
            title="银发餐桌",
            organizer="大光路社区",
            community_code=COMMUNITIES[0],
            capacity=5,
        )
        activity.starts_at.FromDatetime(start)
        activity.ends_at.FromDatetime(start + timedelta(hours=2))
        attendance = []
        for volunteer_id in clients.volunteer_ids:
            record = vpb.AttendanceRecord(volunteer_id=volunteer_id, verified_tenths_of_hours=20)
            record.checked_in_at.FromDatetime(start)
            record.checked_out_at.FromDatetime(start + timedelta(hours=2))
            attendance.append(record)
        importing = vpb.ImportActivityRequest(
            activity=activity, attendance=attendance, source_id=new_key(), request_id=new_key()
        )
        await _command(load, name, "ImportActivity", clients.volunteers.ImportActivity, importing)


async def _command(
    load: Load, client: str, method: str, send: Any, request: Any, subject: str | None = None
) -> Any | None:
    """The command sent until answered; recorded as answered, or (a retry refused, when
    what it names is known) as refused. None when refused."""
    failed_before = len(load.failures)
    reply = await load.call(client, method, send, request)
    key = request.idempotency_key if method == "Transfer" else request.request_id
    retried = len(load.failures) > failed_before
    if reply is not None:
        load.answered.append(Answered(method, key, subject or _made(method, reply), retried))
    elif subject is not None and len(load.failures) - failed_before > 1:
        load.refused.append(Answered(method, key, subject, retried))
    return reply


def _made(method: str, reply: Any) -> str:
    if method == "RegisterCase":
        return str(reply.case.case_id)
    if method == "Transfer":
        return str(reply.transfer_id)
    return str(reply.activity.activity_id)


async def run_load(load: Load, clients: Clients, stop: asyncio.Event) -> None:
    """Two case clients, one of transfers and one of hours, until ``stop``; each
    finishes the chain it is in."""
    await asyncio.gather(
        cases_client(load, clients, "cases-a", stop),
        cases_client(load, clients, "cases-b", stop),
        funds_client(load, clients, "funds", stop),
        hours_client(load, clients, "hours", stop),
    )
