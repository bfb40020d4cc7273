"""cases over real gRPC, with party_orgs as a real server: the whole path of a request."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from civitas.cases.case_index import OVERDUE_CASES
from civitas.cases.v1 import cases_pb2 as pb
from civitas.chassis.auth import Role
from civitas.eventkit import ManualClock
from tests.support.cases_platform import World, platform, register, registration, stamp
from tests.support.processes import eventually

C = grpc.StatusCode


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    async with platform(tmp_path, clock) as built:
        yield built


async def dispatched_case(world: World, category: str) -> pb.Case:
    """A registered request, classified, filed and dispatched to its grid."""
    staff = world.token(Role.COMMUNITY_STAFF)
    case_id = await register(world)
    await world.stub.ClassifyCase(
        pb.ClassifyCaseRequest(case_id=case_id, category=category, urgency=pb.URGENCY_NORMAL),
        metadata=staff,
    )
    await world.stub.FileCase(pb.FileCaseRequest(case_id=case_id), metadata=staff)
    reply = await world.stub.DispatchCase(pb.DispatchCaseRequest(case_id=case_id), metadata=staff)
    return reply.case


async def test_a_request_goes_from_the_hotline_to_a_closed_case(world: World) -> None:
    staff = world.token(Role.COMMUNITY_STAFF)
    s = world.stub
    dispatched = await dispatched_case(world, "公共设施")
    case_id = dispatched.case_id
    for call, request in [
        (s.AcceptCase, pb.AcceptCaseRequest(case_id=case_id, accepted_by="王芳")),
        (s.AddProgressNote, pb.AddProgressNoteRequest(case_id=case_id, note="已联系物业")),
        (s.ResolveCase, pb.ResolveCaseRequest(case_id=case_id, resolution="已更换灯泡")),
        (s.FollowUpCase, pb.FollowUpCaseRequest(case_id=case_id, satisfaction=5, comment="满意")),
        (s.CloseCase, pb.CloseCaseRequest(case_id=case_id)),
    ]:
        await call(request, metadata=staff)
    got = (
        await s.GetCase(pb.GetCaseRequest(case_id=case_id), metadata=world.token(Role.AUDITOR))
    ).case

    assert (dispatched.grid_code, dispatched.handler) == ("QH-01-01-G01", "王芳")
    assert got.status == pb.STATUS_CLOSED
    assert (got.resident_name, got.resident_phone) == ("周敏", "13800001111")
    assert [e.type for e in got.timeline] == [
        "CaseRegistered",
        "CaseClassified",
        "CaseFiled",
        "CaseDispatched",
        "CaseAccepted",
        "ProgressNoted",
        "CaseResolved",
        "CaseFollowedUp",
        "CaseClosed",
    ]
    assert all(
        "周敏" not in e.details_json and "ciphertext" not in e.details_json for e in got.timeline
    )
    stored = await world.running.store.read_all(limit=1000)
    assert not any(
        "周敏" in json.dumps(e.data, ensure_ascii=False) or "13800001111" in json.dumps(e.data)
        for e in stored
    ), "plaintext personal data in an event"


async def test_dispatch_fails_unavailable_and_changes_nothing_when_party_orgs_is_down(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with platform(tmp_path, clock, party_orgs_up=False) as world:
        staff = world.token(Role.COMMUNITY_STAFF)
        case_id = await register(world)
        await world.stub.ClassifyCase(
            pb.ClassifyCaseRequest(case_id=case_id, category="x", urgency=pb.URGENCY_LOW),
            metadata=staff,
        )
        await world.stub.FileCase(pb.FileCaseRequest(case_id=case_id), metadata=staff)
        before = await world.head()

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await world.stub.DispatchCase(pb.DispatchCaseRequest(case_id=case_id), metadata=staff)

        assert caught.value.code() is C.UNAVAILABLE
        assert "nothing was changed" in caught.value.details()
        assert await world.head() == before


async def supervisor_rounds(count: int) -> None:
    """Wait until the supervisor has made ``count`` more rounds: each ends by setting the
    gauge of overdue cases, set to -1 here before each."""

    async def made() -> bool:
        return (REGISTRY.get_sample_value("civitas_cases_overdue") or 0) >= 0

    for _ in range(count):
        OVERDUE_CASES.set(-1)
        await eventually(made, "a round of the supervisor", seconds=30)


async def test_a_breached_deadline_gets_one_notice_even_after_a_restart(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with platform(tmp_path, clock) as world:
        case_id = await register(world, urgency=pb.URGENCY_URGENT)
        clock.advance(timedelta(hours=2))

        async def noticed() -> list[int]:
            case = await world.stub.GetCase(
                pb.GetCaseRequest(case_id=case_id), metadata=world.token(Role.AUDITOR)
            )
            return list(case.case.supervision_notices)

        async def any_notice() -> bool:
            return bool(await noticed())

        await eventually(any_notice, "a supervision notice", seconds=30)
        await supervisor_rounds(2)  # at least one whole round after the notice
        assert await noticed() == [pb.DEADLINE_DISPATCH]
        assert REGISTRY.get_sample_value("civitas_cases_overdue") == 1
    async with platform(tmp_path, clock, party_orgs_up=False) as restarted:
        await supervisor_rounds(2)
        events = await restarted.running.store.read_stream(f"case-{case_id}")
        assert [e.type for e in events].count("SupervisionNoticeIssued") == 1


async def test_list_filters_and_pages_newest_first(world: World) -> None:
    ids = []
    for n in range(5):
        ids.append(
            await register(world, channel=pb.CHANNEL_ONLINE if n % 2 else pb.CHANNEL_GRID_PATROL)
        )
        world.clock.advance(timedelta(minutes=1))
    auditor = world.token(Role.AUDITOR)

    first = await world.stub.ListCases(pb.ListCasesRequest(page_size=2), metadata=auditor)
    second = await world.stub.ListCases(
        pb.ListCasesRequest(page_size=2, page_token=first.next_page_token), metadata=auditor
    )
    online = await world.stub.ListCases(
        pb.ListCasesRequest(channel=pb.CHANNEL_ONLINE, street_code="QH-01"), metadata=auditor
    )
    elsewhere = await world.stub.ListCases(
        pb.ListCasesRequest(community_code="QH-01-02"), metadata=auditor
    )

    assert [c.case_id for c in [*first.cases, *second.cases]] == ids[::-1][:4]
    assert sorted(c.case_id for c in online.cases) == sorted([ids[1], ids[3]])
    assert list(elsewhere.cases) == []


def bad_requests(case_id: str) -> list[tuple[str, object, C, str]]:
    unknown = "00000000-0000-4000-8000-000000000000"
    return [
        ("RegisterCase", registration(channel=0), C.INVALID_ARGUMENT, "channel is required"),
        (
            "RegisterCase",
            registration(community_code="QH-01"),
            C.INVALID_ARGUMENT,
            "not a community",
        ),
        (
            "RegisterCase",
            registration(resident_phone="call me"),
            C.INVALID_ARGUMENT,
            "not a phone number",
        ),
        ("RegisterCase", registration(description=""), C.INVALID_ARGUMENT, "description"),
        (
            "RegisterCase",
            registration(community_code="QH-02-01"),
            C.PERMISSION_DENIED,
            "not for QH-02-01",
        ),
        (
            "ClassifyCase",
            pb.ClassifyCaseRequest(case_id=case_id, category="x"),
            C.INVALID_ARGUMENT,
            "urgency is required",
        ),
        (
            "AnswerOnSpot",
            pb.AnswerOnSpotRequest(case_id=case_id, answer="x"),
            C.FAILED_PRECONDITION,
            "cannot answer on the spot",
        ),
        ("FileCase", pb.FileCaseRequest(case_id="nope"), C.INVALID_ARGUMENT, "case_id"),
        (
            "DispatchCase",
            pb.DispatchCaseRequest(case_id=case_id),
            C.FAILED_PRECONDITION,
            "cannot dispatch",
        ),
        (
            "DispatchCase",
            pb.DispatchCaseRequest(case_id=case_id, grid_code="QH-01-01"),
            C.INVALID_ARGUMENT,
            "not a grid",
        ),
        (
            "AcceptCase",
            pb.AcceptCaseRequest(case_id=unknown, accepted_by="x"),
            C.NOT_FOUND,
            "does not exist",
        ),
        (
            "ReturnCase",
            pb.ReturnCaseRequest(case_id=case_id, reason="x"),
            C.FAILED_PRECONDITION,
            "cannot return",
        ),
        (
            "ReassignCase",
            pb.ReassignCaseRequest(case_id=case_id, grid_code="x", reason="y"),
            C.INVALID_ARGUMENT,
            "grid_code 'x' is not a grid's code",
        ),
        (
            "AddProgressNote",
            pb.AddProgressNoteRequest(case_id=case_id, note="x"),
            C.FAILED_PRECONDITION,
            "cannot note progress",
        ),
        (
            "OpenMediation",
            pb.OpenMediationRequest(case_id=case_id, mediator="x"),
            C.FAILED_PRECONDITION,
            "cannot open mediation",
        ),
        (
            "RecordMediationSession",
            pb.RecordMediationSessionRequest(case_id=case_id, summary="x"),
            C.FAILED_PRECONDITION,
            "cannot hold",
        ),
        (
            "ConcludeMediation",
            pb.ConcludeMediationRequest(case_id=case_id, terms="x"),
            C.FAILED_PRECONDITION,
            "cannot conclude",
        ),
        (
            "ResolveCase",
            pb.ResolveCaseRequest(case_id=case_id, resolution="x"),
            C.FAILED_PRECONDITION,
            "cannot resolve",
        ),
        (
            "FollowUpCase",
            pb.FollowUpCaseRequest(case_id=case_id, satisfaction=9),
            C.INVALID_ARGUMENT,
            "satisfaction is from 1 to 5, not 9",
        ),
        ("CloseCase", pb.CloseCaseRequest(case_id=case_id), C.FAILED_PRECONDITION, "cannot close"),
        (
            "ReopenCase",
            pb.ReopenCaseRequest(case_id=case_id, reason="x"),
            C.FAILED_PRECONDITION,
            "cannot reopen",
        ),
        (
            "MergeCase",
            pb.MergeCaseRequest(duplicate_case_id=case_id, original_case_id=case_id),
            C.FAILED_PRECONDITION,
            "into itself",
        ),
        (
            "RejectCase",
            pb.RejectCaseRequest(case_id=case_id, reason=""),
            C.INVALID_ARGUMENT,
            "reason is required",
        ),
        (
            "WithdrawCase",
            pb.WithdrawCaseRequest(case_id=""),
            C.INVALID_ARGUMENT,
            "case_id is required",
        ),
        (
            "RequestFunds",
            pb.RequestFundsRequest(
                case_id=case_id,
                amount_fen=100,
                payee_account="payee:QH:yinfa",
                purpose="x",
                evidence="y",
            ),
            C.FAILED_PRECONDITION,
            "cannot request funds",
        ),
        (
            "ImportCase",
            pb.ImportCaseRequest(intake=registration()),
            C.INVALID_ARGUMENT,
            "received_at is required",
        ),
        ("GetCase", pb.GetCaseRequest(case_id=unknown), C.NOT_FOUND, "does not exist"),
        ("GetCaseTexts", pb.GetCaseTextsRequest(case_id="case-1"), C.INVALID_ARGUMENT, "case_id"),
        ("ListCases", pb.ListCasesRequest(page_size=501), C.INVALID_ARGUMENT, "page_size"),
        ("ListCases", pb.ListCasesRequest(page_token="garbage"), C.INVALID_ARGUMENT, "page_token"),
    ]


async def test_bad_input_gets_its_code_and_a_clear_message_and_stores_nothing(
    world: World,
) -> None:
    case_id = await register(world)
    staff = world.token(Role.COMMUNITY_STAFF, scope=("QH-01",))
    cases = bad_requests(case_id)
    every_rpc = set(pb.DESCRIPTOR.services_by_name["CasesService"].methods_by_name)
    assert {rpc for rpc, *_ in cases} == every_rpc

    for rpc, request, code, words in cases:
        before = await world.head()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(world.stub, rpc)(request, metadata=staff)
        assert (rpc, caught.value.code()) == (rpc, code), caught.value.details()
        assert words in caught.value.details(), (rpc, caught.value.details())
        assert await world.head() == before, f"{rpc} stored events though it was refused"


async def test_auditors_read_but_change_nothing(world: World) -> None:
    case_id = await register(world)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.stub.FileCase(
            pb.FileCaseRequest(case_id=case_id), metadata=world.token(Role.AUDITOR)
        )
    assert caught.value.code() is C.PERMISSION_DENIED


async def test_an_imported_case_keeps_its_own_times_and_steps(world: World) -> None:
    received = world.clock.now() - timedelta(days=200)
    request = pb.ImportCaseRequest(
        intake=registration(),
        received_at=stamp(received),
        category="噪音扰民",
        grid_code="QH-01-01-G01",
        dispatched_at=stamp(received + timedelta(minutes=40)),
        resolution="已协调商户调整营业时间",
        resolved_at=stamp(received + timedelta(days=3)),
        satisfaction=4,
        closed_at=stamp(received + timedelta(days=4)),
    )

    case = (await world.stub.ImportCase(request, metadata=world.token(Role.DISTRICT_ADMIN))).case

    assert case.status == pb.STATUS_CLOSED
    assert case.registered_at.ToDatetime(tzinfo=UTC) == received
    assert (case.grid_code, case.handler, case.satisfaction) == ("QH-01-01-G01", "王芳", 4)
    assert not case.overdue


@pytest.mark.parametrize(
    ("change", "message", "code"),
    [
        ({"resolved_at": -1}, "resolved_at is before dispatched_at", C.INVALID_ARGUMENT),
        ({"closed_at": 400}, "closed_at is in the future", C.INVALID_ARGUMENT),
        ({"grid_code": "QH-01-02-G01"}, "not a grid of QH-01-01", C.INVALID_ARGUMENT),
    ],
)
async def test_an_import_with_impossible_times_or_places_is_refused(
    world: World, change: dict[str, object], message: str, code: C
) -> None:
    received = world.clock.now() - timedelta(days=200)
    times = {"dispatched_at": 1, "resolved_at": 3, "closed_at": 4}
    fields: dict[str, object] = {"grid_code": "QH-01-01-G01", "satisfaction": 4}
    for name, days in times.items():
        fields[name] = stamp(received + timedelta(days=days))
    for name, value in change.items():
        fields[name] = stamp(received + timedelta(days=value)) if isinstance(value, int) else value
    before = await world.head()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.stub.ImportCase(
            pb.ImportCaseRequest(
                intake=registration(),
                received_at=stamp(received),
                category="x",
                resolution="done",
                **fields,
            ),
            metadata=world.token(Role.DISTRICT_ADMIN),
        )

    assert caught.value.code() is code
    assert message in caught.value.details()
    assert await world.head() == before


async def test_only_district_admins_import_history(world: World) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.stub.ImportCase(
            pb.ImportCaseRequest(
                intake=registration(), received_at=stamp(world.clock.now()), category="x"
            ),
            metadata=world.token(Role.COMMUNITY_STAFF),
        )
    assert caught.value.code() is C.PERMISSION_DENIED


async def test_list_finds_overdue_cases_and_cases_in_a_date_range(world: World) -> None:
    auditor = world.token(Role.AUDITOR)
    early = await register(world, urgency=pb.URGENCY_URGENT)
    world.clock.advance(timedelta(hours=3))
    late = await register(world, urgency=pb.URGENCY_LOW)
    world.clock.advance(timedelta(hours=1))

    overdue = await world.stub.ListCases(pb.ListCasesRequest(overdue_only=True), metadata=auditor)
    window = pb.ListCasesRequest(status=pb.STATUS_REGISTERED)
    window.registered_from.FromDatetime(world.clock.now() - timedelta(hours=2))
    recent = await world.stub.ListCases(window, metadata=auditor)

    assert [c.case_id for c in overdue.cases] == [early]
    assert [c.case_id for c in recent.cases] == [late]


async def test_reassign_needs_someone_on_the_new_grid_and_return_sends_the_case_back(
    world: World,
) -> None:
    staff = world.token(Role.COMMUNITY_STAFF)
    case_id = await register(world)
    await world.stub.ClassifyCase(
        pb.ClassifyCaseRequest(case_id=case_id, category="x", urgency=pb.URGENCY_NORMAL),
        metadata=staff,
    )
    await world.stub.FileCase(pb.FileCaseRequest(case_id=case_id), metadata=staff)
    await world.stub.DispatchCase(pb.DispatchCaseRequest(case_id=case_id), metadata=staff)

    with pytest.raises(grpc.aio.AioRpcError) as caught:  # the seed's second grid has no posts
        await world.stub.ReassignCase(
            pb.ReassignCaseRequest(case_id=case_id, grid_code="QH-01-01-G02", reason="跨网格"),
            metadata=staff,
        )
    returned = await world.stub.ReturnCase(
        pb.ReturnCaseRequest(case_id=case_id, reason="不属于本网格"), metadata=staff
    )

    assert caught.value.code() is C.FAILED_PRECONDITION
    assert "nobody on its posts" in caught.value.details()
    assert (returned.case.status, returned.case.grid_code) == (pb.STATUS_FILED, "")


async def test_a_timestamp_out_of_range_is_bad_input_not_a_crash(world: World) -> None:
    request = pb.ListCasesRequest()
    request.registered_from.seconds = -(10**11)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.stub.ListCases(request, metadata=world.token(Role.AUDITOR))

    assert caught.value.code() is C.INVALID_ARGUMENT
    assert "out of range" in caught.value.details()


@pytest.mark.parametrize(
    ("roles", "scope", "sees"),
    [
        ((Role.AUDITOR,), ("QH",), True),
        ((Role.COMMUNITY_STAFF,), ("QH-01-01",), True),
        ((Role.STREET_STAFF,), ("QH-02",), False),
        ((Role.FINANCE_OFFICER,), ("QH",), False),
    ],
)
async def test_names_and_phones_show_only_to_people_who_work_for_the_cases_community(
    world: World, roles: tuple[Role, ...], scope: tuple[str, ...], sees: bool
) -> None:
    case_id = (await dispatched_case(world, "公共设施")).case_id
    reader = world.token(*roles, scope=scope)

    case = (await world.stub.GetCase(pb.GetCaseRequest(case_id=case_id), metadata=reader)).case
    listed = (await world.stub.ListCases(pb.ListCasesRequest(), metadata=reader)).cases[0]

    for shown in (case, listed):
        assert (shown.resident_name, shown.resident_phone, shown.handler) == (
            ("周敏", "13800001111", "王芳") if sees else ("[hidden]", "[hidden]", "[hidden]")
        )


async def test_importing_a_record_again_changes_nothing_and_half_steps_are_refused(
    world: World,
) -> None:
    admin = world.token(Role.DISTRICT_ADMIN)
    received = world.clock.now() - timedelta(days=40)
    record = pb.ImportCaseRequest(
        intake=registration(),
        received_at=stamp(received),
        category="噪音扰民",
        source_id="12345-2026-000731",
    )

    first = (await world.stub.ImportCase(record, metadata=admin)).case
    before = await world.head()
    again = (await world.stub.ImportCase(record, metadata=admin)).case
    half = pb.ImportCaseRequest(
        intake=registration(),
        received_at=stamp(received),
        category="x",
        dispatched_at=stamp(received),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await world.stub.ImportCase(half, metadata=admin)

    assert again.case_id == first.case_id
    assert await world.head() == before
    assert refused.value.code() is C.INVALID_ARGUMENT
    assert "come together" in refused.value.details()


async def test_who_accepted_and_who_mediates_can_be_named_by_their_person_id(
    world: World,
) -> None:
    staff = world.token(Role.COMMUNITY_STAFF)
    s = world.stub
    case_id = (await dispatched_case(world, "邻里纠纷")).case_id
    member, mediator = str(uuid.uuid4()), f"mediator-{uuid.uuid4()}"
    before = await world.head()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await s.AcceptCase(
            pb.AcceptCaseRequest(case_id=case_id, accepted_by="李明", accepted_by_person_id="李明"),
            metadata=staff,
        )
    unchanged = await world.head() == before
    await s.AcceptCase(
        pb.AcceptCaseRequest(case_id=case_id, accepted_by="李明", accepted_by_person_id=member),
        metadata=staff,
    )
    await s.OpenMediation(
        pb.OpenMediationRequest(case_id=case_id, mediator="陈老", mediator_person_id=mediator),
        metadata=staff,
    )
    events = await world.running.store.read_stream(f"case-{case_id}")
    data = {e.type: e.data for e in events}

    assert refused.value.code() is C.INVALID_ARGUMENT
    assert "accepted_by_person_id '李明' is not a person's id" in (refused.value.details() or "")
    assert unchanged
    assert data["CaseAccepted"]["by_person"] == member
    assert data["MediationOpened"]["mediator_person"] == mediator
    assert "李明" not in json.dumps(data, ensure_ascii=False)


async def test_a_forgotten_members_id_is_refused_as_who_accepted_or_mediates(
    world: World,
) -> None:
    staff = world.token(Role.COMMUNITY_STAFF)
    case_id = (await dispatched_case(world, "邻里纠纷")).case_id
    member = str(uuid.uuid4())
    vault = world.running.app.vault
    await vault.seal_name(member, "李明")  # the member was named once, then forgotten
    await vault.forget(member)
    before = await world.head()
    with pytest.raises(grpc.aio.AioRpcError) as accepting:
        await world.stub.AcceptCase(
            pb.AcceptCaseRequest(case_id=case_id, accepted_by="李明", accepted_by_person_id=member),
            metadata=staff,
        )
    unchanged = await world.head() == before  # nothing stored
    await world.stub.AcceptCase(
        pb.AcceptCaseRequest(case_id=case_id, accepted_by="王芳"), metadata=staff
    )
    accepted = await world.head()
    with pytest.raises(grpc.aio.AioRpcError) as mediating:
        await world.stub.OpenMediation(
            pb.OpenMediationRequest(case_id=case_id, mediator="李明", mediator_person_id=member),
            metadata=staff,
        )

    for refused in (accepting.value, mediating.value):
        assert refused.code() is C.FAILED_PRECONDITION, refused.details()
        assert f"person {member} has been forgotten" in (refused.details() or "")
    assert unchanged
    assert await world.head() == accepted
    assert not await vault.holds_key(member)  # and no key made again
