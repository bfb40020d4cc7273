"""Fuzzing every RPC from its descriptor: the platform's real servers, requests drawn
from each method's input descriptor, callers of every role and scope, and the ids the
platform holds mixed in so that calls get past the first checks.

- :func:`running_platform` starts every service in this process on free ports
  (party_orgs, cases, volunteers, funds and insights on store feeds), loads a small
  district and records what it made (:class:`Known`).
- :func:`requests` draws a request message for a method from its input descriptor:
  strings from hostile values, valid ids and mangled ids; integers at their
  extremes; unknown enum numbers; timestamps out of range; nested messages; lists
  over their bounds.
- :func:`callers` draws the metadata of a call: no token, a garbage one, or a valid
  token of any role and scope (a service's token too).
- :func:`call` sends bytes to a method over a channel, as any gRPC client can, and
  answers the status code and details; :func:`raw_call` does it over a bare HTTP/2
  connection, with header values grpcio's client refuses to send.
- :func:`plausible` fills a request as a careful caller would, and :func:`mangled`
  makes a valid identifier into another string (a control, a space, a look-alike).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import grpc
import pytest
from google.protobuf import descriptor_pool, text_format
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

from civitas.audit.v1 import audit_pb2
from civitas.cases.bootstrap import run_cases
from civitas.cases.v1 import cases_pb2 as cpb
from civitas.cases.v1 import cases_pb2_grpc as cgrpc
from civitas.chassis.auth import Role, TokenAuthority
from civitas.chassis.server import GrpcServer
from civitas.chassis.settings import ServiceSettings
from civitas.eventkit import Clock, EventStore
from civitas.eventkit.projection import ProjectionRunner
from civitas.funds.bootstrap import run_funds
from civitas.funds.v1 import funds_pb2 as fpb
from civitas.funds.v1 import funds_pb2_grpc as fgrpc
from civitas.insights.bootstrap import run_insights
from civitas.insights.bootstrap import sources as insights_sources
from civitas.insights.v1 import insights_pb2
from civitas.party_orgs.bootstrap import run_party_orgs
from civitas.party_orgs.v1 import party_orgs_pb2
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as pogrpc
from civitas.privacy.v1 import privacy_pb2
from civitas.volunteers.bootstrap import run_volunteers
from civitas.volunteers.v1 import volunteers_pb2 as vpb
from civitas.volunteers.v1 import volunteers_pb2_grpc as vgrpc

SECRET = "fuzz-secret-" + "z" * 40
BUGS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
"""What no request may get: the edge maps every refusal to its own code."""
CALL_SECONDS = 20.0
"""A call that takes this long hangs: that is a bug too."""


def _service(module: Any, name: str) -> ServiceDescriptor:
    return module.DESCRIPTOR.services_by_name[name]  # type: ignore[no-any-return]


AUDIT = _service(audit_pb2, "AuditService")
PRIVACY = _service(privacy_pb2, "PrivacyService")
SERVES: dict[str, list[ServiceDescriptor]] = {
    "party_orgs": [_service(party_orgs_pb2, "PartyOrgsService"), AUDIT, PRIVACY],
    "cases": [_service(cpb, "CasesService"), AUDIT, PRIVACY],
    "volunteers": [_service(vpb, "VolunteersService"), AUDIT, PRIVACY],
    "funds": [_service(fpb, "FundsService"), AUDIT],
    "insights": [_service(insights_pb2, "InsightsService")],
}
"""What each service serves (its API; the audit and privacy services of event and
personal-data keepers); a test checks it against the running servers."""
RPCS = [
    pytest.param(service, method, id=f"{service}.{grpc_service.name}.{method.name}")
    for service, served in SERVES.items()
    for grpc_service in served
    for method in grpc_service.methods
]
"""Every RPC of every service, as pytest parameters named service.GrpcService.Method."""

# -- the platform ------------------------------------------------------------------------


@dataclass
class Served:
    """One running service: its channel, the gRPC services it serves, its store."""

    name: str
    port: int
    channel: grpc.aio.Channel
    services: list[ServiceDescriptor]
    store: EventStore | None  # insights keeps no events

    async def head(self) -> int:
        return await self.store.head_position() if self.store else 0


@dataclass
class Known:
    """What the loaded district holds, by the field names that take it."""

    values: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, *values: str) -> None:
        """Record values of a kind (a field name, or ``name:service`` for one service's
        own, which count for every service too)."""
        self.values.setdefault(kind, []).extend(values)
        if ":" in kind:
            self.add(kind.partition(":")[0], *values)

    def for_field(self, name: str, service: str | None = None) -> list[str]:
        """Valid values for a field of this name (``original_case_id`` takes case ids),
        those of ``service`` first (a stream id of its own store)."""
        for key in (f"{name}:{service}", name, kind_of(name) or ""):
            if key in self.values:
                return self.values[key]
        return []


@dataclass(repr=False)
class Platform:
    """The running services, who signs their tokens, and what the district holds."""

    services: dict[str, Served]
    authority: TokenAuthority
    known: Known
    projections: list[tuple[ProjectionRunner, EventStore]]
    """Every projection the platform runs, with the store it follows."""

    def token(self, *roles: Role, scope: tuple[str, ...] = ("QH",), who: str = "fuzzer") -> str:
        return self.authority.mint(who, roles, scope)

    def metadata(self, *roles: Role, scope: tuple[str, ...] = ("QH",)) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token(*roles, scope=scope)}")]

    def __repr__(self) -> str:
        return f"Platform({', '.join(self.services)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Short in Hypothesis's report of a failing example (it prints dataclasses
        field by field otherwise)."""
        printer.text(repr(self))

    def methods(self, service: str) -> list[MethodDescriptor]:
        return [m for s in self.services[service].services for m in s.methods]


def served_services(server: GrpcServer) -> list[ServiceDescriptor]:
    """The descriptors of what a server serves (its API, audit, privacy), from its names."""
    pool = descriptor_pool.Default()
    return [pool.FindServiceByName(name) for name in server.service_names]


def _settings(service: str, var: Path, **extra: str) -> ServiceSettings:
    env = {"CIVITAS_VAR_DIR": str(var), "CIVITAS_AUTH_SECRET": SECRET, **extra}
    return ServiceSettings.from_env(service, env)


@contextlib.asynccontextmanager
async def running_platform(var: Path, clock: Clock) -> AsyncIterator[Platform]:
    """Every service on free ports in this process, a small district loaded."""
    async with contextlib.AsyncExitStack() as stack:
        party = await stack.enter_async_context(
            run_party_orgs(_settings("party_orgs", var), clock=clock, port=0)
        )
        peers = {"CIVITAS_PARTY_ORGS_ADDRESS": f"127.0.0.1:{party.server.port}"}
        cases = await stack.enter_async_context(
            run_cases(_settings("cases", var, **peers), clock=clock, port=0)
        )
        volunteers = await stack.enter_async_context(
            run_volunteers(_settings("volunteers", var, **peers), clock=clock, port=0)
        )
        funds = await stack.enter_async_context(
            run_funds(_settings("funds", var), clock=clock, port=0)
        )
        insights = await stack.enter_async_context(
            run_insights(
                _settings("insights", var, CIVITAS_CASES_ADDRESS=f"127.0.0.1:{cases.server.port}"),
                clock=clock,
                port=0,
                http_port=0,
            )
        )
        services: dict[str, Served] = {}
        for name, running, store in [
            ("party_orgs", party, party.store),
            ("cases", cases, cases.store),
            ("volunteers", volunteers, volunteers.store),
            ("funds", funds, funds.store),
            ("insights", insights, None),
        ]:
            channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}")
            )
            port = running.server.port
            services[name] = Served(name, port, channel, served_services(running.server), store)
        stores = {s.name: s.store for s in services.values() if s.store is not None}
        read_by_insights = [stores[name] for name, _ in insights_sources()]
        projections = [
            (party.directory, party.store),
            (cases.index, cases.store),
            (funds.ledger, funds.store),
            *zip(insights.projections, read_by_insights, strict=True),
        ]
        platform = Platform(services, TokenAuthority(SECRET), Known(), projections)
        await load_district(platform, clock)
        yield platform


# -- a small district, and what it holds -------------------------------------------------


async def load_district(platform: Platform, clock: Clock) -> None:
    """Units, orgs, a member, a case, a volunteer, an activity, accounts, an
    expenditure and a task, each recorded in ``platform.known``."""
    from tests.support.party_orgs_grpc import Client, seed

    known, admin = platform.known, platform.metadata(Role.DISTRICT_ADMIN)
    party = platform.services["party_orgs"]
    assert party.store is not None
    made = await seed(
        Client(
            pogrpc.PartyOrgsServiceStub(party.channel),
            party.channel,
            platform.authority,
            party.store,
        )
    )
    known.add("code", "QH", "QH-01", "QH-01-01", "QH-01-01-G01", "QH-01-01-G02")
    known.add("org_id", made["street"], made["community"], made["grid"], made["organ"])
    known.add("member_id", made["member"])
    known.add("member_number", "M-1")
    known.add("pairing_id", made["pairing"])
    known.add("stream_id:party_orgs", f"member-{made['member']}", f"party_org-{made['grid']}")
    known.add("person_id", made["member"])
    for name, values in BY_FIELD.items():
        known.add(name, *values)

    case = (
        await cgrpc.CasesServiceStub(platform.services["cases"].channel).RegisterCase(
            cpb.RegisterCaseRequest(
                channel=cpb.CHANNEL_HOTLINE_12345,
                community_code="QH-01-01",
                address="大光路12号3栋",
                description="楼道灯坏了一周",
                urgency=cpb.URGENCY_NORMAL,
                resident_name="周敏",
                resident_phone="138 0000 1111",
            ),
            metadata=admin,
        )
    ).case
    known.add("case_id", case.case_id)
    known.add("stream_id:cases", f"case-{case.case_id}")

    vstub = vgrpc.VolunteersServiceStub(platform.services["volunteers"].channel)
    volunteer = (
        await vstub.RegisterVolunteer(
            vpb.RegisterVolunteerRequest(
                name="陈静", phone="139 1234 5678", community_code="QH-01-01", skills=["法律"]
            ),
            metadata=admin,
        )
    ).volunteer
    start = clock.now() + timedelta(days=1)
    activity = (
        await vstub.CreateActivity(
            vpb.CreateActivityRequest(
                brand=vpb.BRAND_ELDERLY_DINING,
                title="银发餐桌",
                organizer="大光路社区",
                community_code="QH-01-01",
                starts_at=stamp(start),
                ends_at=stamp(start + timedelta(hours=3)),
                capacity=10,
            ),
            metadata=admin,
        )
    ).activity
    known.add("volunteer_id", volunteer.volunteer_id)
    known.add("activity_id", activity.activity_id)
    volunteer_streams = [f"volunteer-{volunteer.volunteer_id}", f"activity-{activity.activity_id}"]
    known.add("stream_id:volunteers", *volunteer_streams)
    await load_funds(platform, admin)


async def load_funds(platform: Platform, admin: list[tuple[str, str]]) -> None:
    known = platform.known
    fstub = fgrpc.FundsServiceStub(platform.services["funds"].channel)
    await fstub.AllocateYear(
        fpb.AllocateYearRequest(community_code="QH-01-01", year=2026), metadata=admin
    )
    for kind, owner, key, name in [
        (fpb.ACCOUNT_KIND_PAYEE, "QH", "yinfa", "银发餐桌服务社"),
        (fpb.ACCOUNT_KIND_SOURCE, "QH", "civil-affairs", "区民政局"),
    ]:
        await fstub.OpenAccount(
            fpb.OpenAccountRequest(kind=kind, owner_code=owner, key=key, name=name),
            metadata=admin,
        )
    accounts = ["fund:QH-01-01:special", "payee:QH:yinfa", "source:QH:civil-affairs"]
    known.add("account", *accounts)
    known.add("stream_id:funds", *(f"account-{a}" for a in accounts))
    expenditure = (
        await fstub.RequestExpenditure(
            fpb.RequestExpenditureRequest(
                community_code="QH-01-01",
                payee_account="payee:QH:yinfa",
                amount_fen=500_000,
                purpose="助餐服务采购",
                evidence="合同 2026-017",
            ),
            metadata=admin,
        )
    ).expenditure
    task = (
        await fstub.AssignTask(
            fpb.AssignTaskRequest(
                idempotency_key="task-1",
                department_account="source:QH:civil-affairs",
                community_code="QH-01-01",
                title="独居老人走访",
                amount_fen=100_000,
            ),
            metadata=admin,
        )
    ).task
    known.add("expenditure_id", expenditure.expenditure_id)
    known.add("task_id", task.task_id)
    known.add(
        "stream_id:funds", f"expenditure-{expenditure.expenditure_id}", f"task-{task.task_id}"
    )
    known.add("key", "task-1", "invoice-1")


BY_FIELD = {
    "from_account": ["fund:QH-01-01:special"],
    "to_account": ["payee:QH:yinfa"],
    "payee_account": ["payee:QH:yinfa"],
    "department_account": ["source:QH:civil-affairs"],
    "community_code": ["QH-01-01"],
    "street_code": ["QH-01"],
    "grid_code": ["QH-01-01-G01"],
    "parent_code": ["QH", "QH-01"],
    "owner_code": ["QH", "QH-01-01"],
    "unit_code": ["QH-01-01", "QH-01", "QH"],
}
"""Which units and accounts a field of each name names (a community code names a
community, a payee account a payee)."""


def stamp(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment)
    return out


# -- which fields hold identifiers -------------------------------------------------------

_ENTITIES = (
    "case_id",
    "member_id",
    "volunteer_id",
    "activity_id",
    "expenditure_id",
    "task_id",
    "pairing_id",
    "org_id",
)
_KEYS = ("idempotency_key", "key", "source_id", "entry_id", "feedback_id")


def kind_of(name: str) -> str | None:
    """The kind of identifier a field of this name holds (``original_case_id`` holds a
    case id), or None: not an identifier."""
    if name == "code" or name.endswith("_code"):
        return "code"
    if name == "account_id" or name.endswith("_account"):
        return "account"
    if name.endswith("person_id"):
        return "person_id"
    if name in ("parent_id", "root_id", "new_parent_id"):
        return "org_id"
    for entity in _ENTITIES:
        if name == entity or name.endswith(f"_{entity}"):
            return entity
    if name in ("stream_id", "member_number", "request_id"):
        return name
    return "key" if name in _KEYS else None


def identifier_fields(descriptor: Descriptor) -> list[FieldDescriptor]:
    """The top-level string fields of a request that hold an identifier."""
    return [
        f
        for f in descriptor.fields
        if f.type == FieldDescriptor.TYPE_STRING and not f.is_repeated and kind_of(f.name)
    ]


def _full_width(text: str) -> str:
    """Look-alike text: ASCII letters and digits as their full-width forms."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


def _cyrillic(text: str) -> str:
    """The first letter that has a Cyrillic twin (a, c, e, o, p, x, A, C, E, H, …)
    replaced by it; a Cyrillic S appended when none has."""
    twins = str.maketrans("aceopxACEHKMOPTX", "асеорхАСЕНКМОРТХ")
    for n, char in enumerate(text):
        if char.translate(twins) != char:
            return text[:n] + char.translate(twins) + text[n + 1 :]
    return text + "\u0405"


def _arabic_indic(text: str) -> str:
    """The first ASCII digit as its Arabic-Indic twin (a digit to ``\\d`` and ``int``);
    one appended when there is none."""
    for n, char in enumerate(text):
        if char.isascii() and char.isdigit():
            return text[:n] + chr(0x660 + int(char)) + text[n + 1 :]
    return text + "\u0660"


MANGLINGS: dict[str, Callable[[str], str]] = {
    "trailing newline": lambda v: v + "\n",
    "leading space": lambda v: " " + v,
    "trailing space": lambda v: v + " ",
    "trailing tab": lambda v: v + "\t",
    "NUL inside": lambda v: v[:1] + "\x00" + v[1:],
    "carriage return": lambda v: v + "\r",
    "escape": lambda v: "\x1b" + v,
    "zero-width space": lambda v: v + "\u200b",
    "right-to-left override": lambda v: "\u202e" + v,
    "non-breaking space": lambda v: v + "\u00a0",
    "ideographic space": lambda v: "\u3000" + v,
    "first character a space": lambda v: " " + v[1:],
    "full-width": _full_width,
    "one full-width character": lambda v: v[:-1] + _full_width(v[-1]) if v else "\uff10",
    "one Arabic-Indic digit": _arabic_indic,
    "Cyrillic look-alike": _cyrillic,
    "over-long": lambda v: v + "0" * 200,
    "just over 100": lambda v: (v * 101)[:101],
}
"""Ways to mangle a valid identifier; none of the results names the same thing."""


# -- strategies --------------------------------------------------------------------------

HOSTILE = [
    "",
    " ",
    "\t",
    "\n",
    "\x00",
    "a\x00b",
    "\x7f",
    "QH-01-02\n",
    " QH-01-01",
    "QH-01-01 ",
    "ＱＨ-０１-０１",
    "QH-01-01\u200b",
    "\u202eQH",
    "QH-01-01-G01-G01",
    "qh-01-01",
    "fund:QH-01-01:special\n",
    "fund:QH-01-01:../../etc",
    "account-fund:QH-01-01:special",
    "case-",
    "-",
    "__index_key__",
    "unsealed",
    "'; DROP TABLE events; --",
    "%s%n%x",
    "../" * 10,
    "null",
    "\U0001f600",
    "说" * 100,
    "说" * 101,
    "\uffff",
    "x" * 64,
    "x" * 65,
    "x" * 99,
    "x" * 100,
    "x" * 101,
    "x" * 200,
    "x" * 201,
    "x" * 500,
    "x" * 501,
    "x" * 5000,
    "x" * 70_000,
    "00000000-0000-0000-0000-000000000000",
    str(uuid.UUID(int=2**128 - 1)),
    "{12345678-1234-5678-1234-567812345678}",
    "urn:uuid:12345678-1234-5678-1234-567812345678",
    "12345678123456781234567812345678",
    "12345678-1234-5678-1234-56781234567",
]
"""Strings any field may get: empty, controls, whitespace, look-alikes, bounds ± 1."""

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
_INT_RANGE = {
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
}
MIN_SECONDS = -62_135_596_800  # 0001-01-01
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59


def strings(name: str, known: Known) -> st.SearchStrategy[str]:
    """Values for a string field: valid ids of its kind (often), mangled ones, hostile
    strings, and any text."""
    good = known.for_field(name)
    options = [
        st.sampled_from(HOSTILE),
        st.text(max_size=40),
        st.integers(0, 1200).map(lambda n: "y" * n),
    ]
    if good:
        valid = st.sampled_from(good)
        mangle = st.sampled_from(sorted(MANGLINGS))
        options += [valid, valid, st.tuples(valid, mangle).map(lambda p: MANGLINGS[p[1]](p[0]))]
    if kind_of(name) in ("request_id", "org_id", "entity", "person_id") or name.endswith("_id"):
        options.append(st.uuids().map(str))
    return st.one_of(options)


def integers(kind: int) -> st.SearchStrategy[int]:
    low, high = _INT_RANGE[kind]
    edges = [low, high, 0, 1, -1, 2, 5, 12, 60, 61, 1999, 2000, 2026, 2101, 10**6, 10**12]
    return st.one_of(
        st.sampled_from([e for e in edges if low <= e <= high]), st.integers(low, high)
    )


def timestamps() -> st.SearchStrategy[Timestamp]:
    """Times from year 1 to 9999, around now, and outside the range a Timestamp may hold."""
    now = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    seconds = st.one_of(
        st.sampled_from(
            [MIN_SECONDS, MAX_SECONDS, 0, -1, now, MIN_SECONDS - 1, MAX_SECONDS + 1, *INT64]
        ),
        st.integers(MIN_SECONDS, MAX_SECONDS),
        st.integers(now - 400 * 86_400, now + 400 * 86_400),
    )
    nanos = st.sampled_from([0, 0, 0, 999_999_999, -1, 1_000_000_000, *INT32])
    return st.builds(lambda s, n: Timestamp(seconds=s, nanos=n), seconds, nanos)


def _value(field_: FieldDescriptor, known: Known, depth: int) -> st.SearchStrategy[Any]:
    kind = field_.type
    if kind == FieldDescriptor.TYPE_STRING:
        return strings(field_.name, known)
    if kind in _INT_RANGE:
        return integers(kind)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in field_.enum_type.values]
        return st.one_of(st.sampled_from(numbers), st.sampled_from([-1, 99, *INT32]))
    if field_.message_type.full_name == Timestamp.DESCRIPTOR.full_name:
        return timestamps()
    return messages(field_.message_type, known, depth + 1)


def _repeated(field_: FieldDescriptor, known: Known, depth: int) -> st.SearchStrategy[list[Any]]:
    """Few values mostly; now and then just over a list's bound (50, or 1,000 for a
    roster: a few more than the interceptor allows)."""
    item = _value(field_, known, depth)
    over = 1001 if field_.name == "attendance" else 201 if field_.name == "addresses" else 51
    many = st.lists(item, min_size=1, max_size=1).map(lambda one: one * over)
    return st.one_of(st.lists(item, max_size=3), many) if depth == 0 else st.lists(item, max_size=2)


@st.composite
def _message(draw: st.DrawFn, descriptor: Descriptor, known: Known, depth: int) -> Message:
    message = GetMessageClass(descriptor)()
    for f in descriptor.fields:
        if draw(st.integers(0, 3)) == 0:  # a quarter of the fields left unset
            continue
        if f.is_repeated:
            values = draw(_repeated(f, known, depth))
            target = getattr(message, f.name)
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                for value in values:
                    target.add().CopyFrom(value)
            else:
                target.extend(values)
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, f.name).CopyFrom(draw(_value(f, known, depth)))
        else:
            setattr(message, f.name, draw(_value(f, known, depth)))
    return message


def messages(descriptor: Descriptor, known: Known, depth: int = 0) -> st.SearchStrategy[Message]:
    """A message of ``descriptor``'s type, nested messages down to three levels."""
    if depth > 3:
        return st.just(GetMessageClass(descriptor)())
    return _message(descriptor, known, depth)


def requests(method: MethodDescriptor, known: Known) -> st.SearchStrategy[Message]:
    """A request for ``method``, drawn from its input descriptor."""
    return messages(method.input_type, known)


SCOPES = [("QH",), ("QH-01",), ("QH-01-01",), ("QH-02",), ("QH-01-01-G01",), ("QH-01", "QH-02")]
PEOPLE_ROLES = [r for r in Role if r is not Role.SERVICE]
# A service token naming no service is refused when minted and when presented
# (tests/integration/test_request_edge.py).
SERVICE_SUBJECTS = ["volunteers", "funds", "cases", "insights", "party_orgs"]
GARBAGE_AUTHORIZATION = [
    "",
    "Bearer",
    "Bearer ",
    "Bearer nonsense",
    "Bearer a.b.c",
    "Bearer " + "a" * 5000,
    "Basic dXNlcjpwYXNz",
    "bearer " + "x" * 100,
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
]
CORRELATION_IDS = ["ok-1", "a" * 64, "a" * 65, "has space", "é", "x" * 300, "-leading"]


def callers(authority: TokenAuthority) -> st.SearchStrategy[list[tuple[str, str]]]:
    """The metadata of a call: a valid token of any role and scope (most often), a
    service's token, a garbage token or none; now and then an x-correlation-id."""

    def person(role: Role, scope: tuple[str, ...]) -> str:
        return authority.mint("fuzzer", [role], scope)

    def service(subject: str) -> str:
        return authority.mint(subject, [Role.SERVICE], ["QH"])

    tokens = st.one_of(
        st.builds(person, st.sampled_from(PEOPLE_ROLES), st.sampled_from(SCOPES)),
        st.builds(person, st.sampled_from(PEOPLE_ROLES), st.sampled_from(SCOPES)),
        st.builds(service, st.sampled_from(SERVICE_SUBJECTS)),
        st.sampled_from(GARBAGE_AUTHORIZATION).map(lambda g: g.removeprefix("Bearer ")),
    )
    authorization = st.one_of(
        tokens.map(lambda t: [("authorization", f"Bearer {t}")]),
        st.sampled_from(GARBAGE_AUTHORIZATION).map(lambda g: [("authorization", g)]),
        st.just([]),
    )
    correlation = st.one_of(
        st.just([]), st.just([]), st.sampled_from(CORRELATION_IDS).map(_correlation)
    )
    return st.builds(lambda a, c: a + c, authorization, correlation)


def _correlation(value: str) -> list[tuple[str, str]]:
    return [("x-correlation-id", value)] if value.isascii() else []


MALFORMED = [
    b"\x0a\x05ab",  # field 1, length 5, two bytes follow
    b"\xff",  # a truncated varint tag
    b"\x08",  # field 1 varint, no value
    b"\x08" + b"\xff" * 10 + b"\x01",  # a varint longer than ten bytes
    b"\x0f",  # wire type 7 does not exist
    b"\x00",  # field number 0
    b"\x0b",  # a group that never ends
    b"\x0c",  # a group's end with no start
    b"\x0a\x02\xc3\x28",  # field 1 as a string of invalid UTF-8
    b"\x12\x03\xed\xa0\x80",  # field 2: an encoded surrogate
]
"""Payloads that are no valid message of most types (checked per type)."""


def decodes(method: MethodDescriptor, payload: bytes) -> bool:
    """Whether ``payload`` is a valid message of the method's input type."""
    try:
        GetMessageClass(method.input_type).FromString(payload)
    except DecodeError:
        return False
    return True


def shown(message: Message, most: int = 3000) -> str:
    """A request as Hypothesis reports it: its type and fields on one line, cut short."""
    text = text_format.MessageToString(message, as_one_line=True, as_utf8=True)
    cut = f"… ({len(text)} characters)" if len(text) > most else ""
    return f"{type(message).__name__}({text[:most]}{cut})"


def path_of(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


async def call(
    channel: grpc.aio.Channel,
    method: MethodDescriptor,
    payload: bytes,
    metadata: list[tuple[str, str]],
) -> tuple[grpc.StatusCode, str]:
    """Send ``payload`` to ``method`` as it is (an identity serializer) and answer the
    status and its details."""
    rpc = channel.unary_unary(path_of(method))  # no serializers: bytes in, bytes out
    try:
        await rpc(payload, metadata=metadata, timeout=CALL_SECONDS)
    except grpc.aio.AioRpcError as failed:
        return failed.code(), failed.details() or ""
    return grpc.StatusCode.OK, ""


# -- plausible requests, for the identifier tests ----------------------------------------

_PLAUSIBLE_TEXT = {
    "phone": "139 0000 0000",
    "resident_phone": "139 0000 0000",
    "address": "大光路12号3栋",
    "key": "yinfa2",
}
_PLAUSIBLE_INT = {
    "year": 2026,
    "amount_fen": 100,
    "capacity": 5,
    "population": 10,
    "satisfaction": 4,
    "months": 12,
    "page_size": 10,
    "max_depth": 2,
    "tenths_of_hours": 10,
    "rating": 4,
}


def plausible(
    descriptor: Descriptor, known: Known, now: datetime, service: str | None = None
) -> Message:
    """A request as a careful caller would fill it: every identifier a valid one the
    district (``service``'s store first) holds, a sensible value in every other field;
    no ``as_of`` (now)."""
    message = GetMessageClass(descriptor)()
    for f in descriptor.fields:
        if f.name == "as_of":
            continue
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if f.message_type.full_name == Timestamp.DESCRIPTOR.full_name:
                value: Any = stamp(now + timedelta(days=1))
            else:
                value = plausible(f.message_type, known, now, service)
            target = getattr(message, f.name)
            (target.add() if f.is_repeated else target).CopyFrom(value)
            continue
        value = _plausible_scalar(f, known, service)
        if value is None:
            continue
        if f.is_repeated:
            getattr(message, f.name).append(value)
        else:
            setattr(message, f.name, value)
    return message


def _plausible_scalar(f: FieldDescriptor, known: Known, service: str | None) -> Any:
    if f.type == FieldDescriptor.TYPE_STRING:
        if f.name in ("request_id", "page_token"):
            return None  # a request id binds the request, a page token is the service's
        good = known.for_field(f.name, service)
        return good[0] if good else _PLAUSIBLE_TEXT.get(f.name, "测试")
    if f.type == FieldDescriptor.TYPE_ENUM:
        return next((v.number for v in f.enum_type.values if v.number), 0)
    if f.type == FieldDescriptor.TYPE_BOOL:
        return False
    return _PLAUSIBLE_INT.get(f.name, 1) if f.type in _INT_RANGE else None


def valid_identifiers(name: str, known: Known, service: str | None = None) -> list[str]:
    """Valid values of an identifier field: those the district holds, or for a field
    whose values the caller makes up (a request id, an idempotency key) fresh ones."""
    if name == "request_id":
        return [str(uuid.uuid4())]
    return known.for_field(name, service) or [f"{name.replace('_', '-')}-7"]


HOSTILE_CHARACTERS = (
    [chr(c) for c in range(0x20)]
    + ["\x7f", " ", "\u00a0", "\u3000", "\u200b", "\u200d", "\ufeff", "\u202e", "\u2066"]
    + ["\uff10", "\uff21", "\uff51", "\u0430", "\u0415", "\u0660", "\U0001d7ce"]
)
"""Controls, spaces of several widths, invisible ones, bidi controls, and look-alikes
of ASCII letters and digits (full-width, Cyrillic, Arabic-Indic and mathematical)."""


@st.composite
def mangled(draw: st.DrawFn, valid: list[str]) -> str:
    """A valid identifier made into another string: a named mangling, or a hostile
    character put anywhere in it."""
    value = draw(st.sampled_from(valid))
    if draw(st.booleans()):
        return MANGLINGS[draw(st.sampled_from(sorted(MANGLINGS)))](value)
    where = draw(st.integers(0, len(value)))
    char = draw(st.sampled_from(HOSTILE_CHARACTERS))
    replace = draw(st.booleans()) and where < len(value)
    return value[:where] + char + value[where + int(replace) :]


async def caught_up(platform: Platform, seconds: float = 60) -> None:
    """Wait until every projection has applied every stream its store holds now."""
    from tests.support.processes import last_versions, streams_applied

    for runner, store in platform.projections:
        wanted = {runner.projection.name: await last_versions(store, runner.projection.filter)}
        await streams_applied(runner.engine, wanted, runner.projection.name, seconds)


# -- a bare HTTP/2 client, for metadata grpcio will not send -----------------------------


def _hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out, value = [first | limit], value - limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    return bytes([*out, value])


def _literal(name: bytes, value: bytes) -> bytes:
    """A header field as an HPACK literal without indexing, new name, no Huffman code."""
    return b"\x00" + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    )


def _read_int(block: bytes, at: int, prefix_bits: int) -> tuple[int, int]:
    """An HPACK integer with an N-bit prefix at ``at``; the value and where it ends."""
    limit = (1 << prefix_bits) - 1
    value, at = block[at] & limit, at + 1
    if value < limit:
        return value, at
    shift = 0
    while True:
        byte, at = block[at], at + 1
        value += (byte & 127) << shift
        shift += 7
        if not byte & 128:
            return value, at


def _plain_fields(block: bytes) -> dict[str, str]:
    """The literal, uncompressed fields of a header block (grpc-status and grpc-message
    come so in the first response on a connection); indexed fields are passed over."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(block):
        byte = block[at]
        if byte & 0x80:  # indexed: a static-table field such as :status 200
            _, at = _read_int(block, at, 7)
            continue
        prefix = 6 if byte & 0x40 else 4
        index, at = _read_int(block, at, prefix)
        name = ""
        if index == 0:
            size, at = _read_int(block, at, 7)
            name, at = block[at : at + size].decode("latin-1"), at + size
        size, at = _read_int(block, at, 7)
        fields[name] = block[at : at + size].decode("latin-1")
        at += size
    return fields


async def raw_call(
    port: int, method: MethodDescriptor, payload: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[int | None, str]:
    """One gRPC call over a bare HTTP/2 connection, with header values as given bytes
    (grpcio's client refuses to send a NUL, a line break or a non-ASCII value; a
    hostile client sends them all the same). Answers the grpc-status and grpc-message
    of the reply, or (None, why) when the connection or the stream was ended instead."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request_headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path_of(method).encode()),
        (b":authority", f"127.0.0.1:{port}".encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        *headers,
    ]
    block = b"".join(_literal(name, value) for name, value in request_headers)
    body = b"\x00" + len(payload).to_bytes(4, "big") + payload
    writer.write(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + _frame(4, 0, 0, b"")  # our settings: the defaults
        + _frame(1, 4, 1, block)  # HEADERS, END_HEADERS
        + _frame(0, 1, 1, body)  # DATA, END_STREAM
    )
    try:
        while True:
            head = await asyncio.wait_for(reader.readexactly(9), CALL_SECONDS)
            kind, flags, stream = head[3], head[4], int.from_bytes(head[5:], "big")
            data = await reader.readexactly(int.from_bytes(head[:3], "big"))
            if kind == 4 and not flags & 1:  # the server's settings: acknowledged
                writer.write(_frame(4, 1, 0, b""))
            elif kind == 1 and stream == 1 and flags & 1:  # trailers: the call's status
                fields = _plain_fields(data)
                status = fields.get("grpc-status")
                return (int(status) if status else None), unquote(fields.get("grpc-message", ""))
            elif kind in (3, 7):  # RST_STREAM, GOAWAY
                return None, f"the stream was ended (frame type {kind})"
    except asyncio.IncompleteReadError:
        return None, "the connection was closed"
    finally:
        writer.close()
