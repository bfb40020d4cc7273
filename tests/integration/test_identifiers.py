"""Identifiers are matched whole, and the edge's metadata is bounded: over real gRPC,
against every service running in this process.

- Every RPC that takes an identifier (a unit code, a UUID, an account id, a stream
  id, a person id, a member number, a request id or an idempotency, source or entry
  key) is given a valid one made into another string: a control character, a space
  or an invisible character anywhere in it, a trailing newline, look-alike letters
  or digits, an over-long value. The answer is INVALID_ARGUMENT (or NOT_FOUND for an
  id that is well formed but unknown), and nothing is stored: never a success under
  a mangled id (``QH-01-02\\n`` is not ``QH-01-02``), never INTERNAL.
- A malformed ``x-correlation-id`` or ``x-causation-id`` is INVALID_ARGUMENT naming it,
  and nothing is stored; a garbage or over-long bearer token is UNAUTHENTICATED.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest
import pytest_asyncio
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civitas.audit.v1 import audit_pb2 as apb
from civitas.cases.v1 import cases_pb2 as cpb
from civitas.chassis.auth import Role
from civitas.eventkit import ManualClock
from civitas.funds.v1 import funds_pb2 as fpb
from civitas.insights.v1 import insights_pb2 as ipb
from civitas.party_orgs.v1 import party_orgs_pb2 as popb
from civitas.volunteers.v1 import volunteers_pb2 as vpb
from tests.support.fuzz import (
    AUDIT,
    MANGLINGS,
    SERVES,
    Platform,
    call,
    identifier_fields,
    mangled,
    plausible,
    raw_call,
    running_platform,
    valid_identifiers,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
C = grpc.StatusCode
NOW = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
EXAMPLES = int(os.environ.get("CIVITAS_FUZZ_EXAMPLES", "12"))
REFUSALS = {C.INVALID_ARGUMENT, C.NOT_FOUND}
"""A mangled identifier is malformed, or at most a well-formed id nothing has."""

IDENTIFIER_FIELDS = [
    pytest.param(service, method, f, id=f"{service}.{method.name}.{f.name}")
    for service, served in SERVES.items()
    for grpc_service in served
    for method in grpc_service.methods
    for f in identifier_fields(method.input_type)
]
QUERIES = [
    pytest.param(service, method, id=f"{service}.{method.name}")
    for service, served in SERVES.items()
    for grpc_service in served
    for method in grpc_service.methods
    if identifier_fields(method.input_type) and method.name.startswith(("Get", "List", "Walk"))
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with running_platform(tmp_path_factory.mktemp("ids"), ManualClock(NOW)) as running:
        yield running


def caller_for(platform: Platform, method: MethodDescriptor) -> list[tuple[str, str]]:
    """A caller the method admits: auditors read histories, volunteers' process manager
    records card activities, a district admin does the rest."""
    if method.containing_service.full_name == AUDIT.full_name:
        return platform.metadata(Role.AUDITOR)
    if method.name == "RecordCardActivity":
        token = platform.authority.mint("volunteers", [Role.SERVICE], ["QH"])
        return [("authorization", f"Bearer {token}")]
    return platform.metadata(Role.DISTRICT_ADMIN)


async def answer(
    platform: Platform,
    service: str,
    method: MethodDescriptor,
    request: Message,
    correlation: str = "ids-check",
) -> tuple[grpc.StatusCode, str]:
    channel = platform.services[service].channel
    metadata = [*caller_for(platform, method), ("x-correlation-id", correlation)]
    return await call(channel, method, request.SerializeToString(), metadata)


async def stored_under(platform: Platform, service: str, correlation: str, after: int) -> list:
    """The events stored since ``after`` because of the request with this correlation id
    (a process manager's reaction carries it too)."""
    store = platform.services[service].store
    if store is None:
        return []
    return [e for e in await store.read_all(after=after) if e.correlation_id == correlation]


@pytest.mark.parametrize(("service", "method"), QUERIES)
async def test_a_query_answers_a_plausible_request(
    platform: Platform, service: str, method: MethodDescriptor
) -> None:
    """The requests the property below mangles are valid ones: each query answers its
    plausible request, so a refusal of the mangled one is the identifier's doing."""
    request = plausible(method.input_type, platform.known, NOW, service)
    code, details = await answer(platform, service, method, request)
    assert code is C.OK, f"{method.name} {request}: {code.name} {details}"


@pytest.mark.parametrize(("service", "method", "field"), IDENTIFIER_FIELDS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
async def test_a_mangled_identifier_is_refused_and_stores_nothing(
    platform: Platform,
    service: str,
    method: MethodDescriptor,
    field: FieldDescriptor,
    data: st.DataObject,
) -> None:
    request = plausible(method.input_type, platform.known, NOW, service)
    value = data.draw(
        mangled(valid_identifiers(field.name, platform.known, service)), label=field.name
    )
    setattr(request, field.name, value)
    head = await platform.services[service].head()
    correlation = f"ids-{uuid.uuid4().hex}"

    code, details = await answer(platform, service, method, request, correlation)

    assert code in REFUSALS, f"{method.name} {field.name}={value!r}: {code.name} {details}"
    assert await stored_under(platform, service, correlation, head) == []


@pytest.mark.parametrize(("service", "method", "field"), IDENTIFIER_FIELDS)
async def test_every_named_mangling_is_refused_and_stores_nothing(
    platform: Platform, service: str, method: MethodDescriptor, field: FieldDescriptor
) -> None:
    """Each mangling of :data:`MANGLINGS`, on the first valid value of the field: the
    cases the property above may or may not draw, every time."""
    valid = valid_identifiers(field.name, platform.known, service)[0]
    head = await platform.services[service].head()
    accepted = {}
    for name, mangle in MANGLINGS.items():
        request = plausible(method.input_type, platform.known, NOW, service)
        setattr(request, field.name, mangle(valid))
        correlation = f"ids-{uuid.uuid4().hex}"
        code, details = await answer(platform, service, method, request, correlation)
        stored = await stored_under(platform, service, correlation, head)
        if code not in REFUSALS or stored:
            said = f"{code.name} {details[:80]} ({len(stored)} events)"
            accepted[f"{name} {mangle(valid)!r}"] = said

    taken = "; ".join(f"{mangling} -> {answer}" for mangling, answer in accepted.items())
    assert not accepted, f"{method.name}.{field.name} took: {taken}"


async def test_a_trailing_newline_is_not_the_unit(platform: Platform) -> None:
    """``QH-01-02\\n`` is not a valid-looking second name of ``QH-01-02``: refused at
    registration, in the ledger and in the read models alike."""
    admin = platform.metadata(Role.DISTRICT_ADMIN)
    party = platform.services["party_orgs"]
    head = await party.head()
    cases = [
        (party, "RegisterAdminUnit", popb.RegisterAdminUnitRequest(code="QH-01-02\n", name="新")),
        (party, "GetAdminUnit", popb.GetAdminUnitRequest(code="QH-01-01\n")),
        (
            platform.services["funds"],
            "AllocateYear",
            fpb.AllocateYearRequest(community_code="QH-01-01\n", year=2027),
        ),
        (
            platform.services["insights"],
            "GetScorecard",
            ipb.GetScorecardRequest(unit_code="QH-01-01\n"),
        ),
    ]
    answers = {}
    for served, name, request in cases:
        method = next(m for s in served.services for m in s.methods if m.name == name)
        code, _ = await call(served.channel, method, request.SerializeToString(), admin)
        answers[name] = code

    assert answers == dict.fromkeys(answers, C.INVALID_ARGUMENT)
    assert await party.head() == head


# -- the edge's metadata -----------------------------------------------------------------

COMMANDS: dict[str, tuple[str, Message]] = {
    "party_orgs": (
        "RegisterAdminUnit",
        popb.RegisterAdminUnitRequest(code="QH-07", name="新街道", population=1),
    ),
    "cases": (
        "RegisterCase",
        cpb.RegisterCaseRequest(
            channel=cpb.CHANNEL_ONLINE,
            community_code="QH-01-01",
            address="大光路12号",
            description="路灯不亮",
            urgency=cpb.URGENCY_LOW,
            resident_name="钱进",
            resident_phone="138 0000 2222",
        ),
    ),
    "volunteers": (
        "RegisterVolunteer",
        vpb.RegisterVolunteerRequest(name="孙丽", phone="139 0000 3333", community_code="QH-01-01"),
    ),
    "funds": (
        "OpenAccount",
        fpb.OpenAccountRequest(
            kind=fpb.ACCOUNT_KIND_PAYEE, owner_code="QH", key="edge", name="边缘测试"
        ),
    ),
    "insights": ("GetScorecard", ipb.GetScorecardRequest(unit_code="QH")),
}
"""A request each service answers by storing something (insights: by reading)."""

BAD_CORRELATION_IDS = ["a" * 65, "has space", "semi;colon", "-leading", "x" * 1000, "a/b", ""]
BAD_TOKENS = [
    "Bearer " + "a" * 5000,
    "Bearer nonsense",
    "Bearer a.b.c",
    "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.",
    "Basic dXNlcjpwYXNz",
    "Bearer",
]


def method_of(platform: Platform, service: str, name: str) -> MethodDescriptor:
    return next(m for m in platform.methods(service) if m.name == name)


@pytest.mark.parametrize("service", list(COMMANDS))
@pytest.mark.parametrize("correlation_id", BAD_CORRELATION_IDS, ids=lambda v: repr(v[:12]))
@pytest.mark.parametrize("header", ["x-correlation-id", "x-causation-id"])
async def test_a_malformed_correlation_id_is_refused_by_name_and_stores_nothing(
    platform: Platform, service: str, correlation_id: str, header: str
) -> None:
    name, request = COMMANDS[service]
    served = platform.services[service]
    head = await served.head()
    metadata = [*platform.metadata(Role.DISTRICT_ADMIN), (header, correlation_id)]

    code, details = await call(
        served.channel, method_of(platform, service, name), request.SerializeToString(), metadata
    )

    assert (code, header in details) == (C.INVALID_ARGUMENT, True), details
    assert await served.head() == head


UNSENDABLE_CORRELATION_IDS = [
    b"nul\x00x",
    "é".encode(),
    "关联".encode(),
    b"a\nb",
    b"a\rb",
    b"\xff\xfe",
]
"""Values grpcio's client will not send (NUL, line breaks, non-ASCII, bytes that are no
UTF-8): sent over a bare HTTP/2 connection."""


@pytest.mark.parametrize("service", list(COMMANDS))
@pytest.mark.parametrize("correlation_id", UNSENDABLE_CORRELATION_IDS, ids=repr)
async def test_a_correlation_id_with_a_nul_or_non_ascii_is_refused_by_name(
    platform: Platform, service: str, correlation_id: bytes
) -> None:
    name, request = COMMANDS[service]
    served = platform.services[service]
    head = await served.head()
    token = platform.token(Role.DISTRICT_ADMIN).encode()
    headers = [(b"authorization", b"Bearer " + token), (b"x-correlation-id", correlation_id)]

    status, message = await raw_call(
        served.port, method_of(platform, service, name), request.SerializeToString(), headers
    )

    assert (status, "x-correlation-id" in message) == (C.INVALID_ARGUMENT.value[0], True), message
    assert await served.head() == head


@pytest.mark.parametrize("service", list(COMMANDS))
@pytest.mark.parametrize(
    "authorization", [b"Bearer \x00", "Bearer 令牌".encode(), b"Bearer \xff"], ids=repr
)
async def test_a_token_with_a_nul_or_non_ascii_is_unauthenticated(
    platform: Platform, service: str, authorization: bytes
) -> None:
    name, request = COMMANDS[service]
    served = platform.services[service]
    head = await served.head()

    status, message = await raw_call(
        served.port,
        method_of(platform, service, name),
        request.SerializeToString(),
        [(b"authorization", authorization)],
    )

    assert status == C.UNAUTHENTICATED.value[0], message
    assert await served.head() == head


@pytest.mark.parametrize("service", ["party_orgs", "cases", "volunteers", "funds"])
async def test_a_well_formed_correlation_id_reaches_the_events(
    platform: Platform, service: str
) -> None:
    """The same requests with a good id are stored, under it: the refusals above were
    the id's doing."""
    name, request = COMMANDS[service]
    served = platform.services[service]
    assert served.store is not None
    head = await served.head()
    correlation = f"edge-{service}.1:ok"
    metadata = [*platform.metadata(Role.DISTRICT_ADMIN), ("x-correlation-id", correlation)]

    code, details = await call(
        served.channel, method_of(platform, service, name), request.SerializeToString(), metadata
    )
    stored = await served.store.read_all(after=head, limit=1000)

    assert code is C.OK, details
    assert {e.correlation_id for e in stored} >= {correlation}


@pytest.mark.parametrize("service", list(COMMANDS))
@pytest.mark.parametrize("authorization", BAD_TOKENS, ids=lambda v: v[:16])
async def test_a_garbage_or_over_long_token_is_unauthenticated(
    platform: Platform, service: str, authorization: str
) -> None:
    name, request = COMMANDS[service]
    served = platform.services[service]
    head = await served.head()

    code, details = await call(
        served.channel,
        method_of(platform, service, name),
        request.SerializeToString(),
        [("authorization", authorization)],
    )

    assert code is C.UNAUTHENTICATED, details
    assert await served.head() == head


# -- audit's own inputs ------------------------------------------------------------------

MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z


def history(stream_id: str, **given: object) -> apb.GetHistoryRequest:
    return apb.GetHistoryRequest(stream_id=stream_id, **given)  # type: ignore[arg-type]


def audit_cases(case: str) -> list[tuple[str, apb.GetHistoryRequest, grpc.StatusCode]]:
    other = str(uuid.uuid4())
    return [
        ("empty", history(""), C.INVALID_ARGUMENT),
        ("no id", history("case"), C.INVALID_ARGUMENT),
        ("capital category", history(f"Case-{case}"), C.INVALID_ARGUMENT),
        ("space in the id", history(f"case-{case} "), C.INVALID_ARGUMENT),
        ("another store's category", history(f"member-{case}"), C.INVALID_ARGUMENT),
        ("over-long", history("case-" + "a" * 300), C.INVALID_ARGUMENT),
        ("negative version", history(f"case-{case}", version=-1), C.INVALID_ARGUMENT),
        (
            "after 9999",
            history(f"case-{case}", as_of=Timestamp(seconds=MAX_SECONDS + 1)),
            C.INVALID_ARGUMENT,
        ),
        (
            "negative nanos",
            history(f"case-{case}", as_of=Timestamp(seconds=0, nanos=-1)),
            C.INVALID_ARGUMENT,
        ),
        ("unknown case", history(f"case-{other}"), C.NOT_FOUND),
        (
            "before its first event",
            history(f"case-{case}", as_of=Timestamp(seconds=0)),
            C.NOT_FOUND,
        ),
        ("the last version there may be", history(f"case-{case}", version=2**63 - 1), C.OK),
        ("at the end of time", history(f"case-{case}", as_of=Timestamp(seconds=MAX_SECONDS)), C.OK),
    ]


async def test_audit_history_checks_stream_ids_versions_and_times(platform: Platform) -> None:
    case = platform.known.for_field("case_id")[0]
    served = platform.services["cases"]
    method = next(m for m in platform.methods("cases") if m.name == "GetHistory")
    table = audit_cases(case)
    answers = {}
    for label, request, _ in table:
        code, _ = await call(
            served.channel, method, request.SerializeToString(), platform.metadata(Role.AUDITOR)
        )
        answers[label] = code

    assert answers == {label: expected for label, _, expected in table}
