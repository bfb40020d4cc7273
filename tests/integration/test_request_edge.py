"""The edge every service shares, over real gRPC (party_orgs as the example): request
ids that run a command once, service tokens limited to their grants, tokens checked
whole."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import sqlalchemy as sa

from civitas.chassis.auth import AUDIENCE, ISSUER, Principal, Role, TokenAuthority
from civitas.chassis.requests import digest_of
from civitas.chassis.settings import ServiceSettings
from civitas.eventkit import EventStore, ManualClock, create_read_model_engine
from civitas.party_orgs.bootstrap import run_party_orgs
from civitas.party_orgs.v1 import party_orgs_pb2 as pb
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as pb_grpc

SECRET = "edge-secret-" + "e" * 40
C = grpc.StatusCode


@dataclass
class Edge:
    stub: pb_grpc.PartyOrgsServiceStub
    authority: TokenAuthority
    store: EventStore
    port: int

    def token(
        self, *roles: Role, subject: str = "staff-1", scope: tuple[str, ...] = ("QH",)
    ) -> Any:
        return [("authorization", f"Bearer {self.authority.mint(subject, roles, scope)}")]

    async def refused(self, call: Any, code: grpc.StatusCode, says: str) -> None:
        """``call`` is refused with ``code``, its message says ``says``, nothing stored."""
        before = await self.store.head_position()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() is code, caught.value.details()
        assert says in (caught.value.details() or "")
        assert await self.store.head_position() == before


@pytest.fixture
async def edge(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Edge]:
    settings = ServiceSettings.from_env(
        "party_orgs", {"CIVITAS_VAR_DIR": str(tmp_path), "CIVITAS_AUTH_SECRET": SECRET}
    )
    async with run_party_orgs(settings, clock=clock, port=0) as running:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}")
        stub = pb_grpc.PartyOrgsServiceStub(channel)
        yield Edge(stub, TokenAuthority(SECRET), running.store, running.server.port)
        await channel.close()


def district(request_id: str, name: str = "秦淮区") -> pb.RegisterAdminUnitRequest:
    return pb.RegisterAdminUnitRequest(code="QH", name=name, population=1, request_id=request_id)


async def test_a_retried_command_returns_the_first_result_and_runs_once(edge: Edge) -> None:
    admin, request_id = edge.token(Role.DISTRICT_ADMIN), str(uuid.uuid4())
    first = await edge.stub.RegisterAdminUnit(district(request_id), metadata=admin)
    head = await edge.store.head_position()
    again = await edge.stub.RegisterAdminUnit(district(request_id), metadata=admin)
    assert again.unit == first.unit  # not "QH is registered already"
    assert await edge.store.head_position() == head


async def test_a_retry_answers_with_what_the_first_made_as_it_is_now(edge: Edge) -> None:
    admin, request_id = edge.token(Role.DISTRICT_ADMIN), str(uuid.uuid4())
    await edge.stub.RegisterAdminUnit(district(request_id), metadata=admin)
    await edge.stub.RenameAdminUnit(
        pb.RenameAdminUnitRequest(code="QH", name="新名"), metadata=admin
    )
    again = await edge.stub.RegisterAdminUnit(district(request_id), metadata=admin)
    assert again.unit.name == "新名"


async def test_another_request_under_a_used_request_id_is_refused_and_changes_nothing(
    edge: Edge,
) -> None:
    admin, request_id = edge.token(Role.DISTRICT_ADMIN), str(uuid.uuid4())
    await edge.stub.RegisterAdminUnit(district(request_id), metadata=admin)
    street = pb.RegisterAdminUnitRequest(code="QH-01", name="大光路街道", request_id=request_id)
    await edge.refused(
        edge.stub.RegisterAdminUnit(street, metadata=admin), C.ALREADY_EXISTS, request_id
    )
    another_admin = edge.token(Role.DISTRICT_ADMIN, subject="admin-2")
    await edge.refused(
        edge.stub.RegisterAdminUnit(district(request_id), metadata=another_admin),
        C.ALREADY_EXISTS,
        "a different request",
    )


REGISTER = "/civitas.party_orgs.v1.PartyOrgsService/RegisterAdminUnit"
ADMIN = Principal("staff-1", frozenset({Role.DISTRICT_ADMIN}), ("QH",))


def kept_digests(tmp_path: Path) -> dict[str, bytes]:
    """The request log's digests by request id, as party_orgs' database holds them."""
    settings = ServiceSettings.from_env(
        "party_orgs", {"CIVITAS_VAR_DIR": str(tmp_path), "CIVITAS_AUTH_SECRET": SECRET}
    )
    engine = create_read_model_engine(settings.read_model_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT request_id, digest FROM request_log")).all()
    finally:
        engine.dispose()
    return {request_id: bytes(digest) for request_id, digest in rows}


async def test_the_log_keeps_a_keyed_digest_that_no_guess_of_the_request_can_confirm(
    edge: Edge, tmp_path: Path
) -> None:
    admin, request_id = edge.token(Role.DISTRICT_ADMIN), str(uuid.uuid4())
    await edge.stub.RegisterAdminUnit(district(request_id), metadata=admin)
    kept = kept_digests(tmp_path)[request_id]
    plain = digest_of(REGISTER, ADMIN, district(request_id))  # what a reader could compute

    assert plain not in kept
    assert len(kept) == 33  # a mark and an HMAC-SHA256
    await edge.stub.RegisterAdminUnit(district(request_id), metadata=admin)  # still replays
    await edge.refused(
        edge.stub.RegisterAdminUnit(district(request_id, "玄武区"), metadata=admin),
        C.ALREADY_EXISTS,
        request_id,
    )


async def test_a_request_kept_before_digests_were_keyed_replays_after_the_upgrade(
    tmp_path: Path, clock: ManualClock
) -> None:
    settings = ServiceSettings.from_env(
        "party_orgs", {"CIVITAS_VAR_DIR": str(tmp_path), "CIVITAS_AUTH_SECRET": SECRET}
    )
    request_id = str(uuid.uuid4())
    async with run_party_orgs(settings, clock=clock, port=0) as running:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}")
        edge = Edge(pb_grpc.PartyOrgsServiceStub(channel), TokenAuthority(SECRET), running.store, 0)
        await edge.stub.RegisterAdminUnit(
            district(request_id), metadata=edge.token(Role.DISTRICT_ADMIN)
        )
        await channel.close()
    engine = create_read_model_engine(settings.read_model_url)
    with engine.begin() as conn:  # as an older version kept it: the plain SHA-256
        conn.execute(
            sa.text("UPDATE request_log SET digest = :plain WHERE request_id = :id"),
            {"plain": digest_of(REGISTER, ADMIN, district(request_id)), "id": request_id},
        )
    engine.dispose()

    async with run_party_orgs(settings, clock=clock, port=0) as running:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}")
        edge = Edge(pb_grpc.PartyOrgsServiceStub(channel), TokenAuthority(SECRET), running.store, 0)
        admin = edge.token(Role.DISTRICT_ADMIN)
        head = await edge.store.head_position()
        again = await edge.stub.RegisterAdminUnit(district(request_id), metadata=admin)
        replayed = await edge.store.head_position() == head
        await edge.refused(
            edge.stub.RegisterAdminUnit(district(request_id, "玄武区"), metadata=admin),
            C.ALREADY_EXISTS,
            request_id,
        )
        await channel.close()

    assert again.unit.code == "QH"
    assert replayed
    assert len(kept_digests(tmp_path)[request_id]) == 33  # keyed in place at start


async def test_a_request_that_failed_is_not_kept_and_runs_again(edge: Edge) -> None:
    admin, request_id = edge.token(Role.DISTRICT_ADMIN), str(uuid.uuid4())
    street = pb.RegisterAdminUnitRequest(code="QH-01", name="大光路街道", request_id=request_id)
    await edge.refused(
        edge.stub.RegisterAdminUnit(street, metadata=admin), C.FAILED_PRECONDITION, "QH"
    )
    await edge.stub.RegisterAdminUnit(district(str(uuid.uuid4())), metadata=admin)
    made = await edge.stub.RegisterAdminUnit(street, metadata=admin)
    assert made.unit.code == "QH-01"


async def test_concurrent_copies_of_one_request_run_it_once(edge: Edge) -> None:
    admin, request_id = edge.token(Role.DISTRICT_ADMIN), str(uuid.uuid4())
    replies = await asyncio.gather(
        *(edge.stub.RegisterAdminUnit(district(request_id), metadata=admin) for _ in range(10))
    )
    assert {r.unit.code for r in replies} == {"QH"}
    assert await edge.store.head_position() == 1


async def test_a_request_id_that_is_no_uuid_is_bad_input(edge: Edge) -> None:
    admin = edge.token(Role.DISTRICT_ADMIN)
    await edge.refused(
        edge.stub.RegisterAdminUnit(district("retry-1"), metadata=admin),
        C.INVALID_ARGUMENT,
        "request_id",
    )


async def test_a_service_token_runs_only_the_commands_granted_to_its_service(edge: Edge) -> None:
    admin = edge.token(Role.DISTRICT_ADMIN)
    await edge.stub.RegisterAdminUnit(district(str(uuid.uuid4())), metadata=admin)
    activity = pb.RecordCardActivityRequest(
        member_id=str(uuid.uuid4()),
        activity=pb.CardActivity(
            activity_id="a1",
            kind=pb.CARD_ACTIVITY_KIND_MEETING,
            description="组织生活会",
            tenths_of_hours=10,
            occurred_at={"seconds": 1_700_000_000},
        ),
    )
    volunteers = edge.token(Role.SERVICE, subject="volunteers")
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # past authorization: no such member
        await edge.stub.RecordCardActivity(activity, metadata=volunteers)
    assert caught.value.code() is C.NOT_FOUND
    cases = edge.token(Role.SERVICE, subject="cases")
    await edge.refused(
        edge.stub.RecordCardActivity(activity, metadata=cases),
        C.PERMISSION_DENIED,
        "the cases service's token may not call RecordCardActivity",
    )
    street = pb.RegisterAdminUnitRequest(code="QH-01", name="大光路街道")
    await edge.refused(
        edge.stub.RegisterAdminUnit(street, metadata=volunteers), C.PERMISSION_DENIED, "may not"
    )
    found = await edge.stub.GetAdminUnit(pb.GetAdminUnitRequest(code="QH"), metadata=cases)
    assert found.unit.code == "QH"


def forged(**claims: Any) -> Any:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 60}
    token = jwt.encode({**base, "roles": ["district_admin"], "scope": ["QH"], **claims}, SECRET)
    return [("authorization", f"Bearer {token}")]


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ({"roles": ["service", "district_admin"]}, "service role and no other"),
        ({"roles": ["service"], "sub": "staff-1"}, "names its service"),
        ({"scope": ["QH-01-01\n"]}, "unit code"),
        ({"scope": "QH"}, "lists"),
        ({"sub": "x" * 65}, "subject"),
        ({"sub": "admin\nforged log line"}, "subject"),
        ({"exp": int(time.time()) + 13 * 3600}, "lives longer"),
        ({"roles": ["root"]}, "not valid"),
    ],
)
async def test_a_token_is_checked_whole(edge: Edge, claims: dict, says: str) -> None:
    await edge.refused(
        edge.stub.RegisterAdminUnit(district(str(uuid.uuid4())), metadata=forged(**claims)),
        C.UNAUTHENTICATED,
        says,
    )


async def test_a_request_that_is_no_protobuf_message_is_bad_input(edge: Edge) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}")
    raw = channel.unary_unary("/civitas.party_orgs.v1.PartyOrgsService/RegisterAdminUnit")
    try:
        await edge.refused(
            raw(b"\x0a\xff\xff\xff", metadata=edge.token(Role.DISTRICT_ADMIN)),
            C.INVALID_ARGUMENT,
            "not a valid protobuf message",
        )
    finally:
        await channel.close()


async def test_a_malformed_correlation_id_is_bad_input(edge: Edge) -> None:
    admin = edge.token(Role.DISTRICT_ADMIN)
    for bad in ("x" * 65, "has space", "a/b"):
        await edge.refused(
            edge.stub.RegisterAdminUnit(
                district(str(uuid.uuid4())), metadata=[*admin, ("x-correlation-id", bad)]
            ),
            C.INVALID_ARGUMENT,
            "x-correlation-id",
        )
