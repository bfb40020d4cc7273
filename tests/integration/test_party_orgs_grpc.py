"""party_orgs over real gRPC (in-process server, real sockets): codes, auth, queries."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from unittest import mock

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from civitas.chassis.auth import Role, TokenAuthority
from civitas.chassis.settings import ServiceSettings
from civitas.eventkit import ManualClock
from civitas.party_orgs.bootstrap import run_party_orgs
from civitas.party_orgs.v1 import party_orgs_pb2 as pb
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as pb_grpc
from tests.support.party_orgs_grpc import Client, seed
from tests.support.processes import relayed

SECRET = "test-secret-" + "x" * 40
C = grpc.StatusCode


@pytest.fixture
async def client(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Client]:
    settings = ServiceSettings.from_env(
        "party_orgs",
        {
            "CIVITAS_VAR_DIR": str(tmp_path),
            "CIVITAS_AUTH_SECRET": SECRET,
        },
    )
    async with run_party_orgs(settings, clock=clock, port=0) as running:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}")
        yield Client(
            pb_grpc.PartyOrgsServiceStub(channel),
            channel,
            TokenAuthority(SECRET),
            running.store,
        )
        await channel.close()


async def test_health_and_reflection_answer_without_a_token(client: Client) -> None:
    health = health_pb2_grpc.HealthStub(client.channel)
    reply = await health.Check(
        health_pb2.HealthCheckRequest(service="civitas.party_orgs.v1.PartyOrgsService")
    )
    reflection = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = [s.name async for r in responses for s in r.list_services_response.service]

    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert "civitas.party_orgs.v1.PartyOrgsService" in names


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([], "no bearer token"),
        ([("authorization", "Bearer nonsense")], "not valid"),
        ([("authorization", "Basic abc")], "no bearer token"),
    ],
)
async def test_a_call_without_a_valid_token_is_unauthenticated(
    client: Client, metadata: list, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.stub.RegisterAdminUnit(
            pb.RegisterAdminUnitRequest(code="QH", name="区"), metadata=metadata
        )
    assert caught.value.code() is C.UNAUTHENTICATED
    assert message in caught.value.details()
    assert await client.head() == 0


async def test_an_expired_or_foreign_token_is_unauthenticated(client: Client) -> None:
    with mock.patch("civitas.chassis.auth.time.time", return_value=time.time() - 3600):
        expired = client.authority.mint("x", [Role.DISTRICT_ADMIN], ["QH"], ttl_seconds=60)
    foreign = TokenAuthority("another-secret-" + "y" * 40).mint("x", [Role.DISTRICT_ADMIN], ["QH"])
    for token, message in [(expired, "expired"), (foreign, "not valid")]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.stub.GetAdminUnit(
                pb.GetAdminUnitRequest(code="QH"), metadata=[("authorization", f"Bearer {token}")]
            )
        assert caught.value.code() is C.UNAUTHENTICATED
        assert message in caught.value.details()


async def test_resolve_grid_finds_grid_branch_and_post_holders(client: Client) -> None:
    ids = await seed(client)
    reader = client.token(Role.SERVICE, scope=("QH",), subject="cases")
    elsewhere = client.token(Role.GRID_WORKER, scope=("QH-01-01-G02",))

    by_address = await client.stub.ResolveGrid(
        pb.ResolveGridRequest(community_code="QH-01-01", address="大光路12号3栋"), metadata=reader
    )
    by_code = await client.stub.ResolveGrid(
        pb.ResolveGridRequest(community_code="QH-01-01", grid_code="QH-01-01-G01"), metadata=reader
    )

    assert by_address == by_code
    assert by_address.grid.code == "QH-01-01-G01"  # the longer prefix wins over "大光路1"
    assert by_address.grid_branch.org_id == ids["grid"]
    assert [(p.post, p.holder) for p in by_address.post_holders] == [("网格长", "王芳")]
    hidden = await client.stub.ResolveGrid(
        pb.ResolveGridRequest(community_code="QH-01-01", grid_code="QH-01-01-G01"),
        metadata=elsewhere,
    )
    assert [(p.post, p.holder) for p in hidden.post_holders] == [("网格长", "[hidden]")]
    assert hidden.post_holders[0].person_id == by_code.post_holders[0].person_id


async def test_queries_walk_the_tree_list_units_and_show_a_member(client: Client) -> None:
    ids = await seed(client)
    auditor = client.token(Role.AUDITOR, scope=("QH",))

    tree = await client.stub.WalkOrgTree(
        pb.WalkOrgTreeRequest(root_id=ids["street"]), metadata=auditor
    )
    units = await client.stub.ListAdminUnits(
        pb.ListAdminUnitsRequest(parent_code="QH-01-01"), metadata=auditor
    )
    member = await client.stub.GetMember(
        pb.GetMemberRequest(member_id=ids["member"]), metadata=auditor
    )
    pairings = await client.stub.ListPairings(
        pb.ListPairingsRequest(org_id=ids["organ"]), metadata=auditor
    )

    assert [(n.org.org_id, n.depth) for n in tree.nodes] == [
        (ids["street"], 0),
        (ids["community"], 1),
        (ids["grid"], 2),
    ]
    assert [u.code for u in units.units] == ["QH-01-01-G01", "QH-01-01-G02"]
    assert (member.member.name, member.member.org_id) == ("李明", ids["grid"])
    assert [p.pairing_id for p in pairings.pairings] == [ids["pairing"]]


async def test_a_command_records_the_caller_and_the_correlation_id(client: Client) -> None:
    await client.stub.RegisterAdminUnit(
        pb.RegisterAdminUnitRequest(code="QH", name="秦淮区"),
        metadata=[
            *client.token(Role.DISTRICT_ADMIN, subject="admin-7"),
            ("x-correlation-id", "corr-42"),
        ],
    )

    events = await client.store.read_all()

    assert [(e.actor, e.correlation_id) for e in events] == [("admin-7", "corr-42")]


async def test_handled_calls_are_counted_by_status_code(client: Client) -> None:
    labels = {
        "grpc_type": "unary",
        "grpc_service": "civitas.party_orgs.v1.PartyOrgsService",
        "grpc_method": "GetAdminUnit",
        "grpc_code": "NOT_FOUND",
    }
    before = REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0

    with pytest.raises(grpc.aio.AioRpcError):
        await client.stub.GetAdminUnit(
            pb.GetAdminUnitRequest(code="QH-09"), metadata=client.token(Role.AUDITOR)
        )

    assert REGISTRY.get_sample_value("grpc_server_handled_total", labels) == before + 1


UNKNOWN = "00000000-0000-4000-8000-000000000000"
K = pb.PartyOrgKind


def bad_requests(ids: dict[str, str]) -> list[tuple[str, object, C, str]]:
    """(rpc, request, code, words the message must hold) for every RPC."""
    return [
        (
            "RegisterAdminUnit",
            pb.RegisterAdminUnitRequest(code="qh-1", name="x"),
            C.INVALID_ARGUMENT,
            "unit code",
        ),
        (
            "RegisterAdminUnit",
            pb.RegisterAdminUnitRequest(code="QH-01-05", name=""),
            C.INVALID_ARGUMENT,
            "name is required",
        ),
        (
            "RegisterAdminUnit",
            pb.RegisterAdminUnitRequest(code="QH-07-01", name="x"),
            C.FAILED_PRECONDITION,
            "parent unit QH-07 does not exist",
        ),
        (
            "RegisterAdminUnit",
            pb.RegisterAdminUnitRequest(code="QH-01", name="again"),
            C.FAILED_PRECONDITION,
            "registered already",
        ),
        (
            "RenameAdminUnit",
            pb.RenameAdminUnitRequest(code="QH-01-09", name="x"),
            C.NOT_FOUND,
            "does not exist",
        ),
        (
            "OpenServiceCentre",
            pb.OpenServiceCentreRequest(street_code="QH-01-01", name="x"),
            C.FAILED_PRECONDITION,
            "only a street",
        ),
        (
            "AssignGridPost",
            pb.AssignGridPostRequest(
                grid_code="QH-01-01-G01", post="网格长", holder="别人", duty="x"
            ),
            C.FAILED_PRECONDITION,
            "held by another person",
        ),
        (
            "AssignGridPost",
            pb.AssignGridPostRequest(
                grid_code="QH-01-01-G01", post="x", holder="y", duty="z", member_id="m-1"
            ),
            C.INVALID_ARGUMENT,
            "member_id",
        ),
        (
            "AssignGridPost",
            pb.AssignGridPostRequest(
                grid_code="QH-01-01-G01",
                post="楼栋长",
                holder="y",
                duty="z",
                member_id="00000000-0000-4000-8000-000000000000",
            ),
            C.FAILED_PRECONDITION,
            "member 00000000-0000-4000-8000-000000000000",
        ),
        (
            "VacateGridPost",
            pb.VacateGridPostRequest(grid_code="QH-01-01-G01", post="楼栋长"),
            C.FAILED_PRECONDITION,
            "not held",
        ),
        ("GetAdminUnit", pb.GetAdminUnitRequest(code=""), C.INVALID_ARGUMENT, "unit code"),
        (
            "ListAdminUnits",
            pb.ListAdminUnitsRequest(parent_code="Q"),
            C.INVALID_ARGUMENT,
            "unit code",
        ),
        (
            "ResolveGrid",
            pb.ResolveGridRequest(community_code="QH-01"),
            C.INVALID_ARGUMENT,
            "not a community",
        ),
        (
            "ResolveGrid",
            pb.ResolveGridRequest(community_code="QH-01-01"),
            C.INVALID_ARGUMENT,
            "address or a grid_code",
        ),
        (
            "ResolveGrid",
            pb.ResolveGridRequest(community_code="QH-01-01", address="双塘路9号"),
            C.NOT_FOUND,
            "no grid",
        ),
        (
            "ResolveGrid",
            pb.ResolveGridRequest(community_code="QH-01-01", grid_code="QH-01-02-G01"),
            C.INVALID_ARGUMENT,
            "not a grid of",
        ),
        (
            "FoundPartyOrg",
            pb.FoundPartyOrgRequest(name="x", unit_code="QH-01"),
            C.INVALID_ARGUMENT,
            "kind is required",
        ),
        (
            "FoundPartyOrg",
            pb.FoundPartyOrgRequest(
                kind=K.PARTY_ORG_KIND_BRANCH, name="x", unit_code="QH-01", parent_id="nope"
            ),
            C.INVALID_ARGUMENT,
            "parent_id",
        ),
        (
            "FoundPartyOrg",
            pb.FoundPartyOrgRequest(
                kind=K.PARTY_ORG_KIND_GRID_BRANCH,
                name="x",
                unit_code="QH-01-01-G01",
                parent_id=ids["community"],
            ),
            C.FAILED_PRECONDITION,
            "has a grid_branch already",
        ),
        (
            "FoundPartyOrg",
            pb.FoundPartyOrgRequest(
                kind=K.PARTY_ORG_KIND_BRANCH, name="x", unit_code="QH-01", parent_id=ids["grid"]
            ),
            C.FAILED_PRECONDITION,
            "cannot sit",
        ),
        (
            "MovePartyOrg",
            pb.MovePartyOrgRequest(org_id=ids["street"], new_parent_id=ids["grid"]),
            C.FAILED_PRECONDITION,
            "cycle",
        ),
        (
            "MovePartyOrg",
            pb.MovePartyOrgRequest(org_id=UNKNOWN, new_parent_id=ids["grid"]),
            C.NOT_FOUND,
            "does not exist",
        ),
        (
            "SeatCommitteeMember",
            pb.SeatCommitteeMemberRequest(org_id=ids["community"]),
            C.INVALID_ARGUMENT,
            "seat.role is required",
        ),
        (
            "UnseatCommitteeMember",
            pb.UnseatCommitteeMemberRequest(
                org_id=ids["community"], role=pb.SEAT_ROLE_SECRETARY, holder="无人"
            ),
            C.FAILED_PRECONDITION,
            "holds no",
        ),
        (
            "UnseatCommitteeMember",
            pb.UnseatCommitteeMemberRequest(
                org_id=ids["community"], role=pb.SEAT_ROLE_SECRETARY, holder="[erased]"
            ),
            C.INVALID_ARGUMENT,
            "give the holder's person_id",
        ),
        (
            "UnseatCommitteeMember",
            pb.UnseatCommitteeMemberRequest(
                org_id=ids["community"],
                role=pb.SEAT_ROLE_SECRETARY,
                holder="张书记",
                person_id=ids["member"],
            ),
            C.INVALID_ARGUMENT,
            "not both",
        ),
        (
            "DissolvePartyOrg",
            pb.DissolvePartyOrgRequest(org_id=ids["community"], reason="x"),
            C.FAILED_PRECONDITION,
            "under it",
        ),
        ("GetPartyOrg", pb.GetPartyOrgRequest(org_id=UNKNOWN), C.NOT_FOUND, "does not exist"),
        ("WalkOrgTree", pb.WalkOrgTreeRequest(root_id="x"), C.INVALID_ARGUMENT, "root_id"),
        ("WalkOrgTree", pb.WalkOrgTreeRequest(max_depth=-1), C.INVALID_ARGUMENT, "max_depth"),
        (
            "AdmitMember",
            pb.AdmitMemberRequest(name="x", org_id=ids["grid"]),
            C.INVALID_ARGUMENT,
            "member_number is required",
        ),
        (
            "AdmitMember",
            pb.AdmitMemberRequest(member_number="M-1", name="x", org_id=ids["organ"]),
            C.ALREADY_EXISTS,
            "admitted already",
        ),
        (
            "AdmitMember",
            pb.AdmitMemberRequest(member_number="M-9", name="x", org_id=ids["street"]),
            C.FAILED_PRECONDITION,
            "holds no members",
        ),
        (
            "StartMemberTransfer",
            pb.StartMemberTransferRequest(member_id=ids["member"], to_org_id=UNKNOWN),
            C.FAILED_PRECONDITION,
            "does not exist",
        ),
        (
            "ReceiveMemberTransfer",
            pb.ReceiveMemberTransferRequest(member_id=ids["member"]),
            C.FAILED_PRECONDITION,
            "no transfer",
        ),
        (
            "CancelMemberTransfer",
            pb.CancelMemberTransferRequest(member_id=UNKNOWN, reason="x"),
            C.NOT_FOUND,
            "does not exist",
        ),
        (
            "ReportToCommunity",
            pb.ReportToCommunityRequest(member_id=ids["member"], community_code="QH-01"),
            C.INVALID_ARGUMENT,
            "not a community",
        ),
        (
            "RecordCardActivity",
            pb.RecordCardActivityRequest(member_id=ids["member"]),
            C.INVALID_ARGUMENT,
            "activity is required",
        ),
        (
            "RecordResidentFeedback",
            pb.RecordResidentFeedbackRequest(
                member_id=ids["member"], feedback=pb.ResidentFeedback(feedback_id="f", rating=9)
            ),
            C.INVALID_ARGUMENT,
            "from 1 to 5",
        ),
        (
            "RateAppraisal",
            pb.RateAppraisalRequest(member_id=ids["member"], appraisal=pb.Appraisal(year=2025)),
            C.INVALID_ARGUMENT,
            "appraisal.rating is required",
        ),
        ("GetMember", pb.GetMemberRequest(member_id=""), C.INVALID_ARGUMENT, "member_id"),
        (
            "FormPairing",
            pb.FormPairingRequest(organ_org_id=ids["community"], community_org_id=ids["community"]),
            C.FAILED_PRECONDITION,
            "not an organ",
        ),
        (
            "EndPairing",
            pb.EndPairingRequest(pairing_id=UNKNOWN, reason="x"),
            C.NOT_FOUND,
            "does not exist",
        ),
        ("ListPairings", pb.ListPairingsRequest(org_id="12"), C.INVALID_ARGUMENT, "org_id"),
    ]


async def test_bad_input_gets_its_code_and_a_clear_message_and_stores_nothing(
    client: Client,
) -> None:
    ids = await seed(client)
    admin = client.token(Role.DISTRICT_ADMIN)
    cases = bad_requests(ids)
    covered = {rpc for rpc, *_ in cases}
    every_rpc = set(pb.DESCRIPTOR.services_by_name["PartyOrgsService"].methods_by_name)
    assert covered == every_rpc, f"no bad-input case for {sorted(every_rpc - covered)}"

    for rpc, request, code, words in cases:
        before = await client.head()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(client.stub, rpc)(request, metadata=admin)
        assert (rpc, caught.value.code()) == (rpc, code), caught.value.details()
        assert words in caught.value.details(), (rpc, caught.value.details())
        assert await client.head() == before, f"{rpc} stored events though it was refused"


async def test_a_command_out_of_scope_is_permission_denied(client: Client) -> None:
    ids = await seed(client)
    other_street = client.token(Role.STREET_STAFF, scope=("QH-02",))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.stub.AdmitMember(
            pb.AdmitMemberRequest(member_number="M-5", name="x", org_id=ids["grid"]),
            metadata=other_street,
        )

    assert caught.value.code() is C.PERMISSION_DENIED
    assert "works for QH-02, not for QH-01-01-G01" in caught.value.details()


@pytest.mark.postgres
async def test_party_orgs_runs_with_every_store_on_postgres(clock: ManualClock) -> None:
    from tests.conftest import POSTGRES_URL, drop_schema, missing_dependency, postgres_reachable

    if not await postgres_reachable():
        missing_dependency(f"PostgreSQL at {POSTGRES_URL}")
    schema = f"po_{uuid.uuid4().hex[:10]}"
    settings = ServiceSettings.from_env(
        "party_orgs",
        {
            "CIVITAS_AUTH_SECRET": SECRET,
            "CIVITAS_EVENTSTORE_URL": f"{POSTGRES_URL}?schema={schema}",
            "CIVITAS_READ_MODEL_URL": f"{POSTGRES_URL}?schema={schema}_read",
            "CIVITAS_VAULT_URL": f"{POSTGRES_URL}?schema={schema}_vault",
        },
    )
    try:
        async with (
            run_party_orgs(settings, clock=clock, port=0) as running,
            grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}") as channel,
        ):
            client = Client(
                pb_grpc.PartyOrgsServiceStub(channel),
                channel,
                TokenAuthority(SECRET),
                running.store,
            )
            ids = await seed(client)
            resolved = await client.stub.ResolveGrid(
                pb.ResolveGridRequest(community_code="QH-01-01", address="大光路12号"),
                metadata=client.token(Role.SERVICE, scope=("QH",), subject="cases"),
            )
            member = await client.stub.GetMember(
                pb.GetMemberRequest(member_id=ids["member"]),
                metadata=client.token(Role.AUDITOR),
            )
        assert resolved.grid_branch.org_id == ids["grid"]
        assert member.member.name == "李明"
    finally:
        for suffix in ("", "_read", "_vault"):
            await drop_schema(schema + suffix)


@pytest.mark.kafka
async def test_with_kafka_configured_the_service_relays_its_events(
    tmp_path: Path, clock: ManualClock, kafka_bootstrap: str
) -> None:
    from tests.support.processes import messages_on

    namespace = f"t{uuid.uuid4().hex[:10]}"  # never the default namespace: an operator's
    settings = ServiceSettings.from_env(
        "party_orgs",
        {
            "CIVITAS_VAR_DIR": str(tmp_path),
            "CIVITAS_AUTH_SECRET": SECRET,
            "CIVITAS_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "CIVITAS_KAFKA_NAMESPACE": namespace,
        },
    )
    async with run_party_orgs(settings, clock=clock, port=0) as running:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}") as channel:
            client = Client(
                pb_grpc.PartyOrgsServiceStub(channel),
                channel,
                TokenAuthority(SECRET),
                running.store,
            )
            await seed(client)
        stored = {
            str(e.event_id).encode()
            for e in await running.store.read_all(limit=10_000)
            if not e.category.endswith("_snapshot")
        }
        await relayed(running.store, "party_orgs", namespace)

    published = {
        h["event_id"]
        for *_, h, _ in await messages_on(kafka_bootstrap, f"{namespace}.party_orgs.events.v1")
    }
    assert stored <= published


async def test_post_and_seat_holders_show_to_their_unit_and_not_to_another_community(
    client: Client,
) -> None:
    ids = await seed(client)
    await client.stub.SeatCommitteeMember(
        pb.SeatCommitteeMemberRequest(
            org_id=ids["community"],
            seat=pb.CommitteeSeat(role=pb.SEAT_ROLE_SECRETARY, holder="张书记"),
        ),
        metadata=client.token(Role.DISTRICT_ADMIN),
    )

    async def holders(scope: str) -> tuple[list[str], list[str]]:
        reader = client.token(Role.COMMUNITY_STAFF, scope=(scope,))
        unit = await client.stub.GetAdminUnit(
            pb.GetAdminUnitRequest(code="QH-01-01-G01"), metadata=reader
        )
        org = await client.stub.GetPartyOrg(
            pb.GetPartyOrgRequest(org_id=ids["community"]), metadata=reader
        )
        return [p.holder for p in unit.unit.posts], [s.holder for s in org.org.seats]

    assert await holders("QH-01-01") == (["王芳"], ["张书记"])
    assert await holders("QH-01-02") == (["[hidden]"], ["[hidden]"])
