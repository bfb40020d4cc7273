"""Who may call the audit, privacy and insights services, every RPC against every role,
over real gRPC against every service running in this process.

- audit (``GetHistory``, ``VerifyChains``, served by every event-keeping service):
  auditors only; read only, so no call stores anything;
- privacy (``ForgetPerson``, served by every personal-data keeper): district admins
  only; a refused call leaves the person's key in the vault (their name still shows)
  and an admitted one deletes it (``[erased]``);
- insights (every query): any signed-in caller, of any role and any street; without a
  valid token, UNAUTHENTICATED.

The tables name every RPC of each proto (``rows_cover_the_service``): an RPC added
without a row, or a row for an unknown role, fails.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

import grpc
import pytest
import pytest_asyncio
from google.protobuf.message import Message

from civitas.audit.v1 import audit_pb2 as apb
from civitas.audit.v1 import audit_pb2_grpc as agrpc
from civitas.chassis.auth import Role, TokenAuthority
from civitas.eventkit import ManualClock
from civitas.insights.v1 import insights_pb2 as ipb
from civitas.insights.v1 import insights_pb2_grpc as igrpc
from civitas.privacy.v1 import privacy_pb2 as ppb
from civitas.privacy.v1 import privacy_pb2_grpc as pgrpc
from civitas.volunteers.v1 import volunteers_pb2 as vpb
from civitas.volunteers.v1 import volunteers_pb2_grpc as vgrpc
from tests.support.authorization import ANY_SIGNED_IN, rows_cover_the_service
from tests.support.fuzz import AUDIT, PRIVACY, SERVES, Platform, caught_up, running_platform

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
C = grpc.StatusCode
INSIGHTS = SERVES["insights"][0]

AUDIT_ROWS: Mapping[str, frozenset[Role]] = {
    "GetHistory": frozenset({Role.AUDITOR}),
    "VerifyChains": frozenset({Role.AUDITOR}),
}
PRIVACY_ROWS: Mapping[str, frozenset[Role]] = {"ForgetPerson": frozenset({Role.DISTRICT_ADMIN})}
INSIGHTS_ROWS: Mapping[str, frozenset[Role]] = {
    "GetScorecard": ANY_SIGNED_IN,
    "ListScorecards": ANY_SIGNED_IN,
    "GetTrend": ANY_SIGNED_IN,
    "GetMemberCard": ANY_SIGNED_IN,
    "GetCaseTimeline": ANY_SIGNED_IN,
    "GetFundStatement": ANY_SIGNED_IN,
}
EVENT_KEEPERS = [name for name, served in SERVES.items() if AUDIT in served]
PERSONAL_DATA_KEEPERS = [name for name, served in SERVES.items() if PRIVACY in served]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    clock = ManualClock(datetime(2026, 3, 1, 8, 30, tzinfo=UTC))
    async with running_platform(tmp_path_factory.mktemp("authz"), clock) as running:
        await caught_up(running)
        yield running


def caller(platform: Platform, role: Role, scope: tuple[str, ...] = ("QH",)) -> list:
    subject = "volunteers" if role is Role.SERVICE else f"a-{role.value}"
    token = platform.authority.mint(subject, [role], scope)
    return [("authorization", f"Bearer {token}")]


async def test_the_tables_cover_every_rpc_and_role() -> None:
    rows_cover_the_service(AUDIT_ROWS, AUDIT)
    rows_cover_the_service(PRIVACY_ROWS, PRIVACY)
    rows_cover_the_service(INSIGHTS_ROWS, INSIGHTS)
    assert EVENT_KEEPERS == ["party_orgs", "cases", "volunteers", "funds"]
    assert PERSONAL_DATA_KEEPERS == ["party_orgs", "cases", "volunteers"]


# -- audit -------------------------------------------------------------------------------


def audit_request(platform: Platform, service: str, rpc: str) -> Message:
    if rpc == "GetHistory":
        return apb.GetHistoryRequest(stream_id=platform.known.for_field("stream_id", service)[0])
    return apb.VerifyChainsRequest()


@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("rpc", list(AUDIT_ROWS))
@pytest.mark.parametrize("service", EVENT_KEEPERS)
async def test_audit_admits_auditors_only_and_stores_nothing(
    platform: Platform, service: str, rpc: str, role: Role
) -> None:
    served = platform.services[service]
    stub = agrpc.AuditServiceStub(served.channel)
    head = await served.head()

    code = await answer(
        getattr(stub, rpc), audit_request(platform, service, rpc), caller(platform, role)
    )

    assert code is (C.OK if role in AUDIT_ROWS[rpc] else C.PERMISSION_DENIED)
    assert await served.head() == head


@pytest.mark.parametrize("rpc", list(AUDIT_ROWS))
@pytest.mark.parametrize("service", EVENT_KEEPERS)
async def test_audit_without_a_valid_token_is_unauthenticated(
    platform: Platform, service: str, rpc: str
) -> None:
    stub = agrpc.AuditServiceStub(platform.services[service].channel)
    request = audit_request(platform, service, rpc)
    for metadata in ([], [("authorization", "Bearer forged")]):
        assert await answer(getattr(stub, rpc), request, metadata) is C.UNAUTHENTICATED


# -- privacy -----------------------------------------------------------------------------


async def a_volunteer(platform: Platform) -> tuple[str, str]:
    """A new volunteer, with their own key in volunteers' vault: (volunteer id, person id)."""
    served = platform.services["volunteers"]
    assert served.store is not None
    head = await served.store.head_position()
    phone = f"137{uuid.uuid4().int % 10**8:08d}"
    reply = await vgrpc.VolunteersServiceStub(served.channel).RegisterVolunteer(
        vpb.RegisterVolunteerRequest(name="吴芳", phone=phone, community_code="QH-01-01"),
        metadata=caller(platform, Role.DISTRICT_ADMIN),
    )
    registered = [
        e for e in await served.store.read_all(after=head) if e.type == "VolunteerRegistered"
    ]
    return reply.volunteer.volunteer_id, registered[0].data["person_id"]


async def name_of(platform: Platform, volunteer_id: str) -> str:
    stub = vgrpc.VolunteersServiceStub(platform.services["volunteers"].channel)
    reply = await stub.GetVolunteer(
        vpb.GetVolunteerRequest(volunteer_id=volunteer_id),
        metadata=caller(platform, Role.DISTRICT_ADMIN),
    )
    return reply.volunteer.name


async def forget(
    platform: Platform, person_id: str, metadata: list
) -> tuple[grpc.StatusCode, bool]:
    stub = pgrpc.PrivacyServiceStub(platform.services["volunteers"].channel)
    try:
        reply = await stub.ForgetPerson(
            ppb.ForgetPersonRequest(person_id=person_id), metadata=metadata
        )
    except grpc.aio.AioRpcError as refused:
        return refused.code(), False
    return C.OK, reply.forgotten


@pytest.mark.parametrize("role", list(Role), ids=str)
async def test_forget_person_admits_district_admins_only(platform: Platform, role: Role) -> None:
    volunteer_id, person_id = await a_volunteer(platform)

    code, forgotten = await forget(platform, person_id, caller(platform, role))

    if role in PRIVACY_ROWS["ForgetPerson"]:
        assert (code, forgotten) == (C.OK, True)
        assert await name_of(platform, volunteer_id) == "[erased]"
    else:
        assert code is C.PERMISSION_DENIED
        assert await name_of(platform, volunteer_id) == "吴芳", "a refused call erased the key"
        admitted = await forget(platform, person_id, caller(platform, Role.DISTRICT_ADMIN))
        assert admitted == (C.OK, True), "the key was gone before the admin asked"


async def test_forget_person_from_another_street_is_still_a_district_admins_call(
    platform: Platform,
) -> None:
    """ForgetPerson is the district's: a street's staff with every other role's scope
    cannot, and a district admin scoped to a street can (erasure is not per unit)."""
    volunteer_id, person_id = await a_volunteer(platform)
    street_staff = caller(platform, Role.STREET_STAFF, ("QH-01",))

    refused, _ = await forget(platform, person_id, street_staff)
    admitted = await forget(platform, person_id, caller(platform, Role.DISTRICT_ADMIN, ("QH-02",)))

    assert refused is C.PERMISSION_DENIED
    assert admitted == (C.OK, True)
    assert await name_of(platform, volunteer_id) == "[erased]"


@pytest.mark.parametrize("service", PERSONAL_DATA_KEEPERS)
async def test_forget_person_without_a_valid_token_is_unauthenticated(
    platform: Platform, service: str
) -> None:
    stub = pgrpc.PrivacyServiceStub(platform.services[service].channel)
    request = ppb.ForgetPersonRequest(person_id=platform.known.for_field("person_id")[0])
    for metadata in ([], [("authorization", "Bearer forged")]):
        assert await answer(stub.ForgetPerson, request, metadata) is C.UNAUTHENTICATED


# -- insights ----------------------------------------------------------------------------


def insights_request(platform: Platform, rpc: str) -> Message:
    known = platform.known
    return {
        "GetScorecard": ipb.GetScorecardRequest(unit_code="QH-01-01"),
        "ListScorecards": ipb.ListScorecardsRequest(parent_code="QH"),
        "GetTrend": ipb.GetTrendRequest(unit_code="QH-01", months=12),
        "GetMemberCard": ipb.GetMemberCardRequest(member_id=known.for_field("member_id")[0]),
        "GetCaseTimeline": ipb.GetCaseTimelineRequest(case_id=known.for_field("case_id")[0]),
        "GetFundStatement": ipb.GetFundStatementRequest(account_id="fund:QH-01-01:special"),
    }[rpc]


@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("rpc", list(INSIGHTS_ROWS))
async def test_insights_answers_any_signed_in_caller(
    platform: Platform, rpc: str, role: Role
) -> None:
    """Of any role, and working for another street than the one asked about: insights
    shows figures and ids, no names."""
    stub = igrpc.InsightsServiceStub(platform.services["insights"].channel)
    request = insights_request(platform, rpc)

    code = await answer(getattr(stub, rpc), request, caller(platform, role, ("QH-02",)))

    assert code is (C.OK if role in INSIGHTS_ROWS[rpc] else C.PERMISSION_DENIED)


@pytest.mark.parametrize("rpc", list(INSIGHTS_ROWS))
async def test_insights_without_a_valid_token_is_unauthenticated(
    platform: Platform, rpc: str
) -> None:
    stub = igrpc.InsightsServiceStub(platform.services["insights"].channel)
    request = insights_request(platform, rpc)
    forged = TokenAuthority("someone-else-" + "s" * 40).mint("x", [Role.AUDITOR], ["QH"])
    for metadata in (
        [],
        [("authorization", "Bearer forged")],
        [("authorization", f"Bearer {forged}")],
        [("authorization", f"Basic {forged}")],
    ):
        assert await answer(getattr(stub, rpc), request, metadata) is C.UNAUTHENTICATED


async def answer(rpc: object, request: Message, metadata: list) -> grpc.StatusCode:
    try:
        await rpc(request, metadata=metadata)  # type: ignore[operator]
    except grpc.aio.AioRpcError as refused:
        return refused.code()
    return C.OK
