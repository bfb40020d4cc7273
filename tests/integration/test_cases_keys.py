"""Keys a caller chooses for cases, over real gRPC: a request id makes one case and binds
it to its request, an import's source id names one record, and a retried note is added
once. The application is also called past the request log, as after a crash between a
command and the log's write, or from another replica: the key still holds there."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from civitas.cases.application import HistoricalCase
from civitas.cases.bootstrap import RunningCases
from civitas.cases.domain.case import Channel, Urgency
from civitas.cases.v1 import cases_pb2 as pb
from civitas.cases.v1 import cases_pb2_grpc as pb_grpc
from civitas.chassis.auth import Caller, Principal, Role, TokenAuthority
from civitas.chassis.requests import id_for
from civitas.demo import plan_district, plan_requests
from civitas.errors import AlreadyExists
from civitas.eventkit import ManualClock
from tests.support.cases_platform import SECRET, cases_server, registration, stamp

C = grpc.StatusCode
AUTHORITY = TokenAuthority(SECRET)
STAFF = [("authorization", f"Bearer {AUTHORITY.mint('clerk', [Role.COMMUNITY_STAFF], ['QH'])}")]
ADMIN = [("authorization", f"Bearer {AUTHORITY.mint('admin', [Role.DISTRICT_ADMIN], ['QH'])}")]
CALLER = Caller(Principal("clerk", frozenset({Role.COMMUNITY_STAFF}), ("QH",)))


@dataclass
class World:
    running: RunningCases
    stub: pb_grpc.CasesServiceStub
    clock: ManualClock

    async def head(self) -> int:
        return await self.running.store.head_position()

    async def types(self, case_id: str) -> list[str]:
        return [e.type for e in await self.running.store.read_stream(f"case-{case_id}")]


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    async with cases_server(tmp_path, clock) as (running, stub):
        yield World(running, stub, clock)


async def refused(call: object, code: C) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() is code, caught.value.details()
    return caught.value.details() or ""


async def test_a_registration_sent_twice_under_one_request_id_makes_one_case(
    world: World,
) -> None:
    request_id = str(uuid.uuid4())
    first = await world.stub.RegisterCase(registration(request_id=request_id), metadata=STAFF)
    again = await world.stub.RegisterCase(registration(request_id=request_id), metadata=STAFF)

    assert again.case.case_id == first.case.case_id == id_for("case", request_id)
    assert await world.types(first.case.case_id) == ["CaseRegistered"]
    assert await world.head() == 1


async def test_another_request_under_a_used_request_id_is_refused_and_stores_nothing(
    world: World,
) -> None:
    request_id = str(uuid.uuid4())
    await world.stub.RegisterCase(registration(request_id=request_id), metadata=STAFF)
    before = await world.head()

    details = await refused(
        world.stub.RegisterCase(
            registration(request_id=request_id, description="井盖破损"), metadata=STAFF
        ),
        C.ALREADY_EXISTS,
    )

    assert request_id in details
    assert await world.head() == before


async def test_a_progress_note_retried_under_its_request_id_is_added_once(world: World) -> None:
    case_id = (await world.stub.RegisterCase(registration(), metadata=STAFF)).case.case_id
    for step in (
        pb.ClassifyCaseRequest(case_id=case_id, category="公共设施", urgency=pb.URGENCY_NORMAL),
        pb.FileCaseRequest(case_id=case_id),
        pb.DispatchCaseRequest(case_id=case_id),
        pb.AcceptCaseRequest(case_id=case_id, accepted_by="王芳"),
    ):
        await getattr(world.stub, type(step).__name__.removesuffix("Request"))(step, metadata=STAFF)
    note = pb.AddProgressNoteRequest(
        case_id=case_id, note="已联系物业", request_id=str(uuid.uuid4())
    )

    await world.stub.AddProgressNote(note, metadata=STAFF)
    await world.stub.AddProgressNote(note, metadata=STAFF)

    assert (await world.types(case_id)).count("ProgressNoted") == 1


async def register(world: World, request_id: str, description: str = "楼道灯坏了") -> str:
    case = await world.running.app.register(
        CALLER,
        Channel.HOTLINE_12345,
        "QH-01-01",
        "大光路12号3栋",
        description,
        Urgency.NORMAL,
        "周敏",
        "138 0000 1111",
        request_id,
    )
    return case.id


async def test_past_the_request_log_a_request_id_still_makes_one_case_for_one_request(
    world: World,
) -> None:
    request_id = str(uuid.uuid4())
    first = await register(world, request_id)
    again = await register(world, request_id)
    before = await world.head()
    with pytest.raises(AlreadyExists, match=f"request_id {request_id} was used for a different"):
        await register(world, request_id, "井盖破损")
    with pytest.raises(AlreadyExists, match=f"request_id {request_id}"):
        await world.running.app.register(
            CALLER,
            Channel.HOTLINE_12345,
            "QH-01-01",
            "大光路12号3栋",
            "楼道灯坏了",
            Urgency.NORMAL,
            "周敏",
            "139 0000 2222",
            request_id,
        )

    assert first == again == id_for("case", request_id)
    assert await world.head() == before == 1


async def test_concurrent_registrations_under_one_request_id_make_one_case(world: World) -> None:
    same = str(uuid.uuid4())
    ids = await asyncio.gather(*(register(world, same) for _ in range(4)))
    other = str(uuid.uuid4())
    outcomes = await asyncio.gather(
        register(world, other), register(world, other, "井盖破损"), return_exceptions=True
    )

    assert len(set(ids)) == 1
    assert sorted(type(o).__name__ for o in outcomes) == ["AlreadyExists", "str"]
    assert await world.head() == 2


def imported(world: World, **changes: object) -> pb.ImportCaseRequest:
    received = world.clock.now() - timedelta(days=30)
    request = pb.ImportCaseRequest(
        intake=registration(),
        received_at=stamp(received),
        category="噪音扰民",
        grid_code="QH-01-01-G01",
        dispatched_at=stamp(received + timedelta(hours=1)),
        source_id="12345-2026-000731",
        request_id=str(uuid.uuid4()),
    )
    for field, value in changes.items():
        if field.startswith("intake."):
            setattr(request.intake, field.removeprefix("intake."), value)
        elif isinstance(value, timedelta):
            getattr(request, field).CopyFrom(stamp(received + value))
        else:
            setattr(request, field, value)
    return request


@pytest.mark.parametrize(
    "change",
    [
        {"category": "邻里纠纷"},
        {"dispatched_at": timedelta(hours=2)},
        {"received_at": timedelta(minutes=1)},
        {"grid_code": "QH-01-01-G02"},
        {"intake.description": "井盖破损"},
        {"intake.resident_name": "周明"},
        {"intake.resident_phone": "13900002222"},
        {"intake.urgency": pb.URGENCY_URGENT},
    ],
    ids=lambda change: next(iter(change)),
)
async def test_an_import_of_another_record_under_a_used_source_id_is_refused(
    world: World, change: dict[str, object]
) -> None:
    await world.stub.ImportCase(imported(world), metadata=ADMIN)
    before = await world.head()

    details = await refused(
        world.stub.ImportCase(imported(world, **change), metadata=ADMIN), C.ALREADY_EXISTS
    )

    assert "source_id '12345-2026-000731' was used for a different case" in details
    assert await world.head() == before


async def test_the_same_record_imported_again_is_the_same_case_and_its_digest_is_sealed(
    world: World,
) -> None:
    first = (await world.stub.ImportCase(imported(world), metadata=ADMIN)).case
    before = await world.head()
    again = (await world.stub.ImportCase(imported(world), metadata=ADMIN)).case
    registered = (await world.running.store.read_stream(f"case-{first.case_id}"))[0]

    assert again.case_id == first.case_id
    assert await world.head() == before
    assert registered.data["request_digest_ciphertext"].startswith("pd1:")


async def test_a_forgotten_residents_record_cannot_be_confirmed_by_importing_it_again(
    world: World,
) -> None:
    first = (await world.stub.ImportCase(imported(world), metadata=ADMIN)).case
    await world.running.app.vault.forget(first.resident_id)
    before = await world.head()

    await refused(world.stub.ImportCase(imported(world), metadata=ADMIN), C.ALREADY_EXISTS)

    assert await world.head() == before


async def test_the_demos_import_run_again_finds_its_cases_and_stores_nothing(
    world: World,
) -> None:
    """The demo imports a year of requests under fixed source ids; a second run sends the
    same records (with new request ids, as the chassis client does)."""
    now = world.clock.now()
    records = plan_requests(plan_district(), 30, now)

    async def run() -> list[str]:
        replies = []
        for record in records:
            record.request_id = str(uuid.uuid4())
            replies.append(await world.stub.ImportCase(record, metadata=ADMIN))
        return [r.case.case_id for r in replies]

    first = await run()
    before = await world.head()
    second = await run()

    assert second == first
    assert await world.head() == before


async def test_an_import_without_a_source_id_takes_its_id_from_the_request_id(
    world: World,
) -> None:
    record = HistoricalCase(
        channel=Channel.ONLINE,
        community_code="QH-01-01",
        address="大光路1号",
        description="路灯不亮",
        urgency=Urgency.LOW,
        resident_name="周敏",
        resident_phone="13800001111",
        received_at=world.clock.now() - timedelta(days=3),
        category="公共设施",
    )
    admin = Caller(Principal("admin", frozenset({Role.DISTRICT_ADMIN}), ("QH",)))
    request_id = str(uuid.uuid4())

    first = await world.running.app.import_case(admin, record, request_id)
    again = await world.running.app.import_case(admin, record, request_id)

    assert first.id == again.id == id_for("case", request_id)
    assert await world.types(first.id) == ["CaseRegistered", "CaseClassified"]
