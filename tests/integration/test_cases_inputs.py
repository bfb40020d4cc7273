"""Every cases RPC probed over real gRPC with the values an insider would try: empty,
over-long, NUL, whitespace, a trailing newline, full-width look-alikes, numbers and enums
out of range, forged page tokens. An identifier or code that is not one is refused
INVALID_ARGUMENT before anything is read; nothing answers INTERNAL or UNKNOWN; nothing
refused stores an event."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from civitas.cases.bootstrap import RunningCases
from civitas.cases.domain.values import MAX_FUNDING_FEN
from civitas.cases.v1 import cases_pb2 as pb
from civitas.cases.v1 import cases_pb2_grpc as pb_grpc
from civitas.chassis.auth import Role, TokenAuthority
from civitas.eventkit import ManualClock
from tests.support.cases_platform import SECRET, cases_server, registration, stamp

C = grpc.StatusCode
AUTHORITY = TokenAuthority(SECRET)
ADMIN = [("authorization", f"Bearer {AUTHORITY.mint('admin', [Role.DISTRICT_ADMIN], ['QH'])}")]
SERVICE = pb.DESCRIPTOR.services_by_name["CasesService"]

PROBES = {
    "empty": "",
    "whitespace": "   ",
    "padded": " QH-01-01 ",
    "over-long": "Q" * 101,
    "NUL": "QH-01\x00-01",
    "trailing newline": "QH-01-02\n",
    "full-width letters": "ＱＨ-01-02",
    "full-width digits": "QH-０１-０２",
    "Arabic-Indic digits": "QH-٠١-٠٢",
    "a grid's full-width digits": "QH-01-01-G０１",
}
REQUIRED_IDS = {
    "case_id",
    "duplicate_case_id",
    "original_case_id",
    "community_code",
    "payee_account",
    "resident_phone",
}
OPTIONAL_IDS = {
    "request_id",
    "source_id",
    "page_token",
    "street_code",
    "accepted_by_person_id",
    "mediator_person_id",
}
OPTIONAL_IN = {("ListCases", "community_code"), ("DispatchCase", "grid_code")}
OPTIONAL_IN |= {("ImportCase", "grid_code")}


@dataclass
class World:
    running: RunningCases
    stub: pb_grpc.CasesServiceStub
    clock: ManualClock

    async def head(self) -> int:
        return await self.running.store.head_position()

    async def call(self, method: str, request: Message) -> tuple[C, str]:
        try:
            await getattr(self.stub, method)(request, metadata=ADMIN)
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details() or ""
        return C.OK, ""


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    async with cases_server(tmp_path, clock) as (running, stub):
        yield World(running, stub, clock)


async def valid_requests(world: World) -> dict[str, Message]:
    """A well-formed request for every RPC, about real cases."""
    ids = [
        (await world.stub.RegisterCase(registration(), metadata=ADMIN)).case.case_id
        for _ in range(2)
    ]
    case, person = ids[0], str(uuid.uuid4())
    received = world.clock.now() - timedelta(days=30)
    return {
        "RegisterCase": registration(),
        "ClassifyCase": pb.ClassifyCaseRequest(
            case_id=case, category="公共设施", urgency=pb.URGENCY_NORMAL
        ),
        "AnswerOnSpot": pb.AnswerOnSpotRequest(case_id=case, answer="已告知"),
        "FileCase": pb.FileCaseRequest(case_id=case),
        "DispatchCase": pb.DispatchCaseRequest(case_id=case, grid_code="QH-01-01-G01"),
        "AcceptCase": pb.AcceptCaseRequest(
            case_id=case, accepted_by="王芳", accepted_by_person_id=person
        ),
        "ReturnCase": pb.ReturnCaseRequest(case_id=case, reason="不属于"),
        "ReassignCase": pb.ReassignCaseRequest(
            case_id=case, grid_code="QH-01-01-G02", reason="转交"
        ),
        "AddProgressNote": pb.AddProgressNoteRequest(case_id=case, note="进展"),
        "OpenMediation": pb.OpenMediationRequest(
            case_id=case, mediator="陈老", mediator_person_id=person
        ),
        "RecordMediationSession": pb.RecordMediationSessionRequest(case_id=case, summary="会谈"),
        "ConcludeMediation": pb.ConcludeMediationRequest(case_id=case, agreed=True, terms="修复"),
        "ResolveCase": pb.ResolveCaseRequest(case_id=case, resolution="已修复"),
        "FollowUpCase": pb.FollowUpCaseRequest(case_id=case, satisfaction=4, comment="好"),
        "CloseCase": pb.CloseCaseRequest(case_id=case),
        "ReopenCase": pb.ReopenCaseRequest(case_id=case, reason="没修好"),
        "MergeCase": pb.MergeCaseRequest(duplicate_case_id=ids[1], original_case_id=case),
        "RejectCase": pb.RejectCaseRequest(case_id=case, reason="不受理"),
        "WithdrawCase": pb.WithdrawCaseRequest(case_id=case, reason="已解决"),
        "RequestFunds": pb.RequestFundsRequest(
            case_id=case,
            amount_fen=100,
            payee_account="payee:QH:suppliers",
            purpose="换灯",
            evidence="报价单",
        ),
        "ImportCase": pb.ImportCaseRequest(
            intake=registration(),
            received_at=stamp(received),
            category="噪音扰民",
            grid_code="QH-01-01-G01",
            dispatched_at=stamp(received + timedelta(hours=1)),
            source_id="12345-2026-000731",
        ),
        "GetCase": pb.GetCaseRequest(case_id=case),
        "GetCaseTexts": pb.GetCaseTextsRequest(case_id=case),
        "ListCases": pb.ListCasesRequest(community_code="QH-01-01"),
    }


def string_fields(message: Message, prefix: str = "") -> list[str]:
    """Every string field of a request, nested messages included (``intake.address``)."""
    found = []
    for field in message.DESCRIPTOR.fields:
        if field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
            found.append(prefix + field.name)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.name.endswith(
            "Request"
        ):
            found += string_fields(getattr(message, field.name), f"{prefix}{field.name}.")
    return found


def with_value(request: Message, path: str, value: Any) -> Message:
    changed = type(request)()
    changed.CopyFrom(request)
    *parents, name = path.split(".")
    target = changed
    for parent in parents:
        target = getattr(target, parent)
    if isinstance(value, Message):
        getattr(target, name).CopyFrom(value)
    else:
        setattr(target, name, value)
    return changed


def expected_for(method: str, path: str, value: str) -> C | None:
    """INVALID_ARGUMENT for an identifier that is not one (an optional one may be empty);
    None where any answer but INTERNAL or UNKNOWN will do (free text)."""
    name = path.rsplit(".", 1)[-1]
    optional = name in OPTIONAL_IDS or (method, name) in OPTIONAL_IN
    if name not in REQUIRED_IDS | OPTIONAL_IDS | {"grid_code"}:
        return None
    return None if optional and value == "" else C.INVALID_ARGUMENT


async def probe(world: World, method: str, request: Message, expected: C | None) -> None:
    before = await world.head()
    code, details = await world.call(method, request)
    assert code not in (C.INTERNAL, C.UNKNOWN), (method, request, details)
    if expected is not None:
        assert code is expected, (method, str(request), code, details)
    if code is not C.OK:
        assert await world.head() == before, (method, "stored events though refused")


async def test_every_string_of_every_rpc_is_checked_at_the_edge(world: World) -> None:
    requests = await valid_requests(world)
    assert set(requests) == set(SERVICE.methods_by_name)

    probed = {method: 0 for method in requests}
    for method, request in requests.items():
        for path in string_fields(request):
            for value in PROBES.values():
                expected = expected_for(method, path, value)
                await probe(world, method, with_value(request, path, value), expected)
                probed[method] += expected is not None

    assert all(probed.values()), "an RPC without an identifier probed"


PAYEES = [
    "fund:QH-01-01:special",
    "payee:QH",
    "payee:QH:suppliers:x",
    "payee:QH:Suppliers",
    "payee:ＱＨ:suppliers",
    "payee:QH-０１:suppliers",
    "payee:Q:suppliers",
    "payee::suppliers",
    "payee:QH:",
    " payee:QH:suppliers",
]


def timestamp(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


OUT_OF_RANGE: list[tuple[str, str, Callable[[World], Any]]] = [
    *[("FollowUpCase", "satisfaction", lambda w, v=v: v) for v in (0, 6, -1, 2**31 - 1)],
    *[("ImportCase", "satisfaction", lambda w, v=v: v) for v in (6, -1)],
    *[
        ("RequestFunds", "amount_fen", lambda w, v=v: v)
        for v in (0, -1, MAX_FUNDING_FEN + 1, 2**63 - 1)
    ],
    *[("RequestFunds", "payee_account", lambda w, v=v: v) for v in PAYEES],
    *[("ListCases", "page_size", lambda w, v=v: v) for v in (-1, 501)],
    *[(m, "channel", lambda w: 99) for m in ("RegisterCase", "ListCases")],
    ("ImportCase", "intake.channel", lambda w: 99),
    *[(m, "urgency", lambda w: 99) for m in ("RegisterCase", "ClassifyCase")],
    ("ListCases", "status", lambda w: 99),
    ("ImportCase", "received_at", lambda w: timestamp(-(10**11))),
    ("ImportCase", "received_at", lambda w: timestamp(0, 2_000_000_000)),
    ("ImportCase", "received_at", lambda w: stamp(datetime(1999, 12, 31, tzinfo=UTC))),
    ("ImportCase", "received_at", lambda w: stamp(w.clock.now() + timedelta(days=1))),
    ("ImportCase", "closed_at", lambda w: timestamp(10**12)),
    ("ListCases", "registered_to", lambda w: timestamp(10**12)),
    ("ListCases", "registered_from", lambda w: timestamp(0, -1)),
    ("ImportCase", "intake.request_id", lambda w: str(uuid.uuid4())),
]


@pytest.mark.parametrize(
    ("method", "path", "value"),
    OUT_OF_RANGE,
    ids=[f"{m}.{p}-{n}" for n, (m, p, _) in enumerate(OUT_OF_RANGE)],
)
async def test_numbers_enums_times_and_accounts_out_of_range_are_invalid_arguments(
    world: World, method: str, path: str, value: Callable[[World], Any]
) -> None:
    requests = await valid_requests(world)
    await probe(world, method, with_value(requests[method], path, value(world)), C.INVALID_ARGUMENT)


def forged(payload: object, signature: str = "") -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"{body}.{signature}" if signature else body


async def test_a_page_token_is_read_only_as_given_out_and_only_for_its_filter(
    world: World,
) -> None:
    for _ in range(3):
        await world.stub.RegisterCase(registration(), metadata=ADMIN)
        world.clock.advance(timedelta(minutes=1))
    first = await world.stub.ListCases(pb.ListCasesRequest(page_size=1), metadata=ADMIN)
    token = first.next_page_token
    payload, _, signature = token.partition(".")
    tampered = forged(["2099-01-01T00:00:00+00:00", "z"], signature)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    tokens = {
        "garbage": "garbage",
        "forged, unsigned": forged(["2099-01-01T00:00:00+00:00", "z"]),
        "forged, another's signature": tampered,
        "a signature changed": flipped,
        "a payload only": payload,
        "not JSON": forged("x", signature),
        "full-width": "ＡＢＣ." + signature,
    }

    for name, value in tokens.items():
        code, details = await world.call(
            "ListCases", pb.ListCasesRequest(page_size=1, page_token=value)
        )
        assert (name, code) == (name, C.INVALID_ARGUMENT), details
        assert "page_token" in details
    elsewhere = pb.ListCasesRequest(page_size=1, page_token=token, status=pb.STATUS_REGISTERED)
    assert (await world.call("ListCases", elsewhere))[0] is C.INVALID_ARGUMENT
    second = await world.stub.ListCases(
        pb.ListCasesRequest(page_size=2, page_token=token), metadata=ADMIN
    )
    assert len(second.cases) == 2
