"""Every cases RPC against every role (table-driven, application level, a fresh world per
case): each command admits exactly its roles and stores events, refuses the others and
stores nothing, refuses a caller from another street, and, where it touches two units
(a grid it dispatches or reassigns to, the two cases of a merge, an import's grid),
refuses a caller with scope over one of them but not the other. Queries: any signed-in
caller reads, over real gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from civitas.cases.application import Cases, HistoricalCase
from civitas.cases.domain.case import Channel, Urgency
from civitas.cases.v1 import cases_pb2 as pb
from civitas.chassis.auth import Caller, Principal, Role, TokenAuthority
from civitas.errors import InvalidInput, NotAllowed
from civitas.eventkit import EventStore, InMemoryEventStore, ManualClock, create_read_model_engine
from civitas.eventkit.personal import PersonalDataVault
from tests.support.authorization import (
    ANY_SIGNED_IN,
    admits_exactly,
    refuses_another_street,
    refuses_scope,
    rows_cover_the_service,
)
from tests.support.cases_platform import SECRET, FakeGrids, cases_server

R = Role
# Who may do what, written out here (not imported) so that the test states the policy.
INTAKE = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF, R.GRID_WORKER}
DISPATCHERS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF}
HANDLERS = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF, R.GRID_WORKER, R.PARTY_SECRETARY}
FOLLOW_UP = {R.DISTRICT_ADMIN, R.STREET_STAFF, R.COMMUNITY_STAFF}
IMPORTERS = {R.DISTRICT_ADMIN}
COMMUNITY, GRID = "QH-01-01", "QH-01-01-G01"
NEIGHBOUR_GRID = "QH-01-02-G01"  # a grid of the next community of the same street
ADMIN = Caller(Principal("admin", frozenset({R.DISTRICT_ADMIN}), ("QH",)), "setup")


@dataclass
class World:
    app: Cases
    store: EventStore
    grids: FakeGrids
    clock: ManualClock


async def build_world(tmp_path: Path, clock: ManualClock) -> World:
    store = InMemoryEventStore()
    vault = PersonalDataVault(create_read_model_engine(f"sqlite:///{tmp_path}/vault.db"))
    await vault.setup()
    grids = FakeGrids()
    return World(Cases(store, vault, clock, grids), store, grids, clock)


# -- cases in the state each command needs, made by a district admin -----------------------


async def registered(w: World, community: str = COMMUNITY) -> str:
    case = await w.app.register(
        ADMIN,
        Channel.HOTLINE_12345,
        community,
        "大光路12号",
        "楼道灯坏了",
        Urgency.NORMAL,
        "周敏",
        "13800001111",
    )
    return case.id


async def classified(w: World) -> str:
    case_id = await registered(w)
    await w.app.classify(ADMIN, case_id, "公共设施", Urgency.NORMAL)
    return case_id


async def filed(w: World) -> str:
    case_id = await classified(w)
    await w.app.file(ADMIN, case_id)
    return case_id


async def dispatched(w: World) -> str:
    case_id = await filed(w)
    await w.app.dispatch(ADMIN, case_id, None)
    return case_id


async def in_progress(w: World) -> str:
    case_id = await dispatched(w)
    await w.app.accept(ADMIN, case_id, "王芳")
    return case_id


async def in_mediation(w: World) -> str:
    case_id = await in_progress(w)
    await w.app.open_mediation(ADMIN, case_id, "陈老")
    return case_id


async def resolved(w: World) -> str:
    case_id = await in_progress(w)
    await w.app.resolve(ADMIN, case_id, "已更换灯泡")
    return case_id


async def followed_up(w: World, satisfaction: int = 5) -> str:
    case_id = await resolved(w)
    await w.app.follow_up(ADMIN, case_id, satisfaction, "")
    return case_id


async def unsatisfied(w: World) -> str:
    return await followed_up(w, 2)


async def duplicate_and_original(w: World) -> tuple[str, str]:
    return await registered(w), await registered(w)


async def across_streets(w: World) -> tuple[str, str]:
    """A duplicate in QH-01-01 and its original in QH-02-01."""
    return await registered(w), await registered(w, "QH-02-01")


async def nothing(w: World) -> None:
    return None


def record(w: World, grid: str | None = None) -> HistoricalCase:
    received = w.clock.now() - timedelta(days=30)
    return HistoricalCase(
        channel=Channel.HOTLINE_12345,
        community_code=COMMUNITY,
        address="大光路12号",
        description="夜间噪音",
        urgency=Urgency.NORMAL,
        resident_name="周敏",
        resident_phone="13800001111",
        received_at=received,
        category="噪音扰民",
        grid_code=grid,
        dispatched_at=received + timedelta(hours=1) if grid else None,
        source_id="12345-2026-000731",
    )


Prepare = Callable[[World], Awaitable[Any]]
Run = Callable[[World, Caller, Any], Awaitable[Any]]

COMMANDS: dict[str, tuple[Prepare, Run, set[Role]]] = {
    "RegisterCase": (
        nothing,
        lambda w, c, _: w.app.register(
            c,
            Channel.ONLINE,
            COMMUNITY,
            "大光路1号",
            "井盖破损",
            Urgency.URGENT,
            "李强",
            "13900002222",
        ),
        INTAKE,
    ),
    "ClassifyCase": (
        registered,
        lambda w, c, case: w.app.classify(c, case, "公共设施", Urgency.LOW),
        INTAKE,
    ),
    "AnswerOnSpot": (
        classified,
        lambda w, c, case: w.app.answer_on_spot(c, case, "已告知办理地点"),
        INTAKE,
    ),
    "FileCase": (classified, lambda w, c, case: w.app.file(c, case), INTAKE),
    "DispatchCase": (filed, lambda w, c, case: w.app.dispatch(c, case, GRID), DISPATCHERS),
    "AcceptCase": (dispatched, lambda w, c, case: w.app.accept(c, case, "王芳"), HANDLERS),
    "ReturnCase": (
        dispatched,
        lambda w, c, case: w.app.return_to_sender(c, case, "不属于本网格"),
        HANDLERS,
    ),
    "ReassignCase": (
        dispatched,
        lambda w, c, case: w.app.reassign(c, case, "QH-01-01-G02", "跨网格"),
        DISPATCHERS,
    ),
    "AddProgressNote": (
        in_progress,
        lambda w, c, case: w.app.note_progress(c, case, "已联系物业"),
        HANDLERS,
    ),
    "OpenMediation": (
        in_progress,
        lambda w, c, case: w.app.open_mediation(c, case, "陈老"),
        HANDLERS,
    ),
    "RecordMediationSession": (
        in_mediation,
        lambda w, c, case: w.app.hold_mediation_session(c, case, "双方到场"),
        HANDLERS,
    ),
    "ConcludeMediation": (
        in_mediation,
        lambda w, c, case: w.app.conclude_mediation(c, case, True, "三日内修复"),
        HANDLERS,
    ),
    "ResolveCase": (in_progress, lambda w, c, case: w.app.resolve(c, case, "已修复"), HANDLERS),
    "FollowUpCase": (
        resolved,
        lambda w, c, case: w.app.follow_up(c, case, 4, "满意"),
        FOLLOW_UP,
    ),
    "CloseCase": (followed_up, lambda w, c, case: w.app.close(c, case), FOLLOW_UP),
    "ReopenCase": (
        unsatisfied,
        lambda w, c, case: w.app.reopen(c, case, "没修好"),
        FOLLOW_UP,
    ),
    "MergeCase": (
        duplicate_and_original,
        lambda w, c, cases: w.app.merge(c, *cases),
        INTAKE,
    ),
    "RejectCase": (registered, lambda w, c, case: w.app.reject(c, case, "属于法院受理"), INTAKE),
    "WithdrawCase": (registered, lambda w, c, case: w.app.withdraw(c, case, "已自行解决"), INTAKE),
    "RequestFunds": (
        in_progress,
        lambda w, c, case: w.app.request_funds(
            c, case, 180_000, "payee:QH:suppliers", "换灯", "报价单"
        ),
        HANDLERS,
    ),
    "ImportCase": (nothing, lambda w, c, _: w.app.import_case(c, record(w, GRID)), IMPORTERS),
}
QUERIES = {"GetCase": ANY_SIGNED_IN, "ListCases": ANY_SIGNED_IN, "GetCaseTexts": ANY_SIGNED_IN}

CROSSING: list[tuple[str, Prepare, Run, tuple[str, ...]]] = [
    # the case's community but not the grid, and the grid but not the case's community
    *[
        ("DispatchCase", filed, lambda w, c, case: w.app.dispatch(c, case, NEIGHBOUR_GRID), s)
        for s in [(COMMUNITY,), ("QH-01-02",)]
    ],
    *[
        (
            "ReassignCase",
            dispatched,
            lambda w, c, case: w.app.reassign(c, case, NEIGHBOUR_GRID, "转交"),
            s,
        )
        for s in [(COMMUNITY,), ("QH-01-02",)]
    ],
    # the duplicate's street but not the original's, and the other way round
    *[
        ("MergeCase", across_streets, lambda w, c, cases: w.app.merge(c, *cases), s)
        for s in [("QH-01",), ("QH-02",)]
    ],
    # the record's grid but not its community
    ("ImportCase", nothing, lambda w, c, _: w.app.import_case(c, record(w, GRID)), (GRID,)),
]


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    built = await build_world(tmp_path, clock)
    yield built
    await built.store.close()


def test_the_table_has_a_row_for_every_rpc_of_the_service() -> None:
    rows = {name: allowed for name, (_, _, allowed) in COMMANDS.items()} | QUERIES
    rows_cover_the_service(rows, pb.DESCRIPTOR.services_by_name["CasesService"])


def test_no_command_admits_auditors_or_service_tokens() -> None:
    assert all(not {R.AUDITOR, R.SERVICE} & allowed for _, _, allowed in COMMANDS.values())


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("command", sorted(COMMANDS))
async def test_each_command_admits_exactly_its_roles(
    world: World, command: str, role: Role
) -> None:
    prepare, run, allowed = COMMANDS[command]
    prepared = await prepare(world)
    await admits_exactly(
        lambda p: run(world, Caller(p, "test"), prepared),
        allowed,
        role,
        world.store.head_position,
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
async def test_each_command_refuses_a_caller_from_another_street(
    world: World, command: str
) -> None:
    prepare, run, allowed = COMMANDS[command]
    prepared = await prepare(world)
    await refuses_another_street(
        lambda p: run(world, Caller(p, "test"), prepared), allowed, world.store.head_position
    )


@pytest.mark.parametrize(
    ("command", "prepare", "run", "scope"),
    CROSSING,
    ids=[f"{name}-{'+'.join(scope)}" for name, _, _, scope in CROSSING],
)
async def test_a_command_touching_two_units_refuses_scope_over_only_one(
    world: World, command: str, prepare: Prepare, run: Run, scope: tuple[str, ...]
) -> None:
    prepared = await prepare(world)
    await refuses_scope(
        lambda p: run(world, Caller(p, "test"), prepared),
        COMMANDS[command][2],
        scope,
        world.store.head_position,
    )


STREET = Caller(Principal("street", frozenset({R.STREET_STAFF}), ("QH-01",)), "test")
STAFF = Caller(Principal("staff", frozenset({R.COMMUNITY_STAFF}), (COMMUNITY,)), "test")
Send = Callable[[World, Caller, str, str | None], Awaitable[Any]]


@pytest.mark.parametrize(
    ("prepare", "send", "asked"),
    [
        (filed, lambda w, c, case, grid: w.app.dispatch(c, case, grid), None),
        (
            dispatched,
            lambda w, c, case, grid: w.app.reassign(c, case, grid, "转交"),
            "QH-01-01-G02",
        ),
    ],
    ids=["DispatchCase", "ReassignCase"],
)
async def test_a_case_goes_to_no_grid_of_another_community_even_for_a_caller_over_both(
    world: World, prepare: Prepare, send: Send, asked: str | None
) -> None:
    """A street's staff covers both communities; the grid is named, or party_orgs answers
    another community's when asked (it refuses that itself; cases does not rely on it)."""
    case_id = await prepare(world)
    before = await world.store.head_position()

    with pytest.raises(InvalidInput, match=f"not a grid of {COMMUNITY}"):
        await send(world, STREET, case_id, NEIGHBOUR_GRID)
    world.grids.answer = NEIGHBOUR_GRID
    with pytest.raises(InvalidInput, match=f"not a grid of {COMMUNITY}"):
        await send(world, STREET, case_id, asked)
    with pytest.raises(NotAllowed, match=f"works for {COMMUNITY}, not for {NEIGHBOUR_GRID}"):
        await send(world, STAFF, case_id, asked)

    assert await world.store.head_position() == before


async def test_an_import_names_no_grid_of_another_community(world: World) -> None:
    before = await world.store.head_position()
    with pytest.raises(InvalidInput, match=f"not a grid of {COMMUNITY}"):
        await world.app.import_case(ADMIN, record(world, NEIGHBOUR_GRID))
    assert await world.store.head_position() == before


async def online_case(app: Cases, address: str) -> Any:
    return await app.register(
        ADMIN, Channel.ONLINE, COMMUNITY, address, "路灯不亮", Urgency.LOW, "周敏", "13800001111"
    )


async def test_any_signed_in_caller_reads_cases(tmp_path: Path, clock: ManualClock) -> None:
    authority = TokenAuthority(SECRET)
    async with cases_server(tmp_path, clock) as (running, stub):
        case = await online_case(running.app, "大光路1号")
        for role in ANY_SIGNED_IN:
            reader = "volunteers" if role is Role.SERVICE else "reader"  # a service names itself
            token = [("authorization", f"Bearer {authority.mint(reader, [role], ['QH-02'])}")]
            got = await stub.GetCase(pb.GetCaseRequest(case_id=case.id), metadata=token)
            listed = await stub.ListCases(pb.ListCasesRequest(), metadata=token)
            texts = await stub.GetCaseTexts(pb.GetCaseTextsRequest(case_id=case.id), metadata=token)

            assert got.case.case_id == case.id, role
            assert [c.case_id for c in listed.cases] == [case.id], role
            assert [dict(t.fields) for t in texts.texts] == [{"description": "[hidden]"}], role


async def test_case_texts_open_for_the_case_community_by_the_one_rule_and_refuse_bad_input(
    tmp_path: Path, clock: ManualClock
) -> None:
    authority = TokenAuthority(SECRET)

    def token(role: Role, scope: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {authority.mint('reader', [role], [scope])}")]

    async with cases_server(tmp_path, clock) as (running, stub):
        case = await online_case(running.app, "大光路1号3栋2单元302室")
        await running.app.classify(ADMIN, case.id, "公共设施", Urgency.NORMAL)
        await running.app.file(ADMIN, case.id)
        await running.app.dispatch(ADMIN, case.id, None)
        await running.app.accept(ADMIN, case.id, "王芳")
        await running.app.note_progress(ADMIN, case.id, "已报修")
        request = pb.GetCaseTextsRequest(case_id=case.id)
        seen = {
            who: [
                (t.version, t.type, dict(t.fields))
                for t in (await stub.GetCaseTexts(request, metadata=metadata)).texts
            ]
            for who, metadata in {
                "staff": token(R.COMMUNITY_STAFF, COMMUNITY),
                "finance": token(R.FINANCE_OFFICER, "QH"),
                "neighbour": token(R.COMMUNITY_STAFF, "QH-01-02"),
            }.items()
        }
        events = await running.store.read_stream(f"case-{case.id}")
        refused = {}
        for name, bad, metadata in [
            ("not an id", "case-1", token(R.AUDITOR, "QH")),
            ("too long", "x" * 101, token(R.AUDITOR, "QH")),
            ("unknown", "5b0f2c1e-8f0a-4d8e-9c57-2a4c1d6e0b39", token(R.AUDITOR, "QH")),
            ("no token", case.id, []),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.GetCaseTexts(pb.GetCaseTextsRequest(case_id=bad), metadata=metadata)
            refused[name] = error.value.code()

    registered, noted = events[0], next(e for e in events if e.type == "ProgressNoted")
    assert seen["staff"] == [
        (
            registered.stream_version,
            "CaseRegistered",
            {"address_rest": "2单元302室", "description": "路灯不亮"},
        ),
        (noted.stream_version, "ProgressNoted", {"note": "已报修"}),
    ]
    hidden = {"address_rest": "[hidden]", "description": "[hidden]"}
    assert [f for _, _, f in seen["finance"]] == [hidden, {"note": "[hidden]"}]
    assert seen["neighbour"] == [(v, t, dict.fromkeys(f, "[hidden]")) for v, t, f in seen["staff"]]
    assert refused == {
        "not an id": grpc.StatusCode.INVALID_ARGUMENT,
        "too long": grpc.StatusCode.INVALID_ARGUMENT,
        "unknown": grpc.StatusCode.NOT_FOUND,
        "no token": grpc.StatusCode.UNAUTHENTICATED,
    }
