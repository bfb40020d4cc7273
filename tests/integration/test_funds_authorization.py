"""Every funds RPC against every role, from another street, and, for each command that
touches two units, with scope over one of them but not the other (table-driven: the
table covers every RPC of the proto). Commands at the application level, a fresh
world each; queries and service tokens over real gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from civitas.chassis.auth import Caller, Principal, Role, TokenAuthority
from civitas.chassis.settings import ServiceSettings
from civitas.errors import RuleViolation
from civitas.eventkit import InMemoryEventStore, ManualClock
from civitas.funds.bootstrap import run_funds
from civitas.funds.domain.accounts import YUAN, AccountKind
from civitas.funds.v1 import funds_pb2 as pb
from civitas.funds.v1 import funds_pb2_grpc as pb_grpc
from tests.support.authorization import (
    ANY_SIGNED_IN,
    admits_exactly,
    refuses_another_street,
    refuses_scope,
    rows_cover_the_service,
)
from tests.support.funds_world import (
    CLERK,
    DEPARTMENT,
    FUND,
    NEIGHBOUR_FUND,
    PAYEE,
    SETUP,
    World,
    build_world,
)

R = Role
FINANCE = {R.DISTRICT_ADMIN, R.FINANCE_OFFICER}
REQUESTERS = {
    R.DISTRICT_ADMIN,
    R.STREET_STAFF,
    R.COMMUNITY_STAFF,
    R.PARTY_SECRETARY,
    R.FINANCE_OFFICER,
}
COMMUNITY_APPROVERS = {R.DISTRICT_ADMIN, R.COMMUNITY_STAFF, R.PARTY_SECRETARY}
STREET_APPROVERS = {R.DISTRICT_ADMIN, R.STREET_STAFF}
Command = Callable[[World, Caller], Awaitable[Any]]
COMMANDS: dict[str, tuple[Command, set[Role]]] = {
    "OpenAccount": (
        lambda w, c: w.app.open_account(c, AccountKind.FUND, "QH-01-01", "extra", "备用金"),
        FINANCE,
    ),
    "AllocateYear": (lambda w, c: w.app.allocate_year(c, "QH-01-03", 2026, 0), FINANCE),
    "Transfer": (
        lambda w, c: w.app.transfer(c, "adjust-1", FUND, NEIGHBOUR_FUND, 100, "调剂"),
        FINANCE,
    ),
    "AssignTask": (
        lambda w, c: w.app.assign_task(c, "survey-1", DEPARTMENT, "QH-01-01", "入户调查", 100),
        FINANCE,
    ),
    "RequestExpenditure": (
        lambda w, c: w.app.request_expenditure(c, "QH-01-01", PAYEE, 100, "采购", "发票", None),
        REQUESTERS,
    ),
    "ApproveExpenditure": (lambda w, c: w.app.approve(c, w.requested), COMMUNITY_APPROVERS),
    "ReserveExpenditure": (lambda w, c: w.app.reserve(c, w.approved), FINANCE),
    "DisburseExpenditure": (lambda w, c: w.app.disburse(c, w.reserved), FINANCE),
    "VoidExpenditure": (lambda w, c: w.app.void(c, w.reserved, "供应商未履约"), FINANCE),
    "RejectExpenditure": (
        lambda w, c: w.app.reject(c, w.requested, "证据不足"),
        COMMUNITY_APPROVERS | STREET_APPROVERS,
    ),
    "CloseFiscalYear": (lambda w, c: w.app.close_year(c, "fund:QH-01-01:subsidy", 2026), FINANCE),
}
QUERIES = {
    "GetTask": ANY_SIGNED_IN,
    "GetExpenditure": ANY_SIGNED_IN,
    "GetStatement": ANY_SIGNED_IN,
    "GetTrialBalance": ANY_SIGNED_IN,
}
PARTIAL_SCOPES: dict[str, list[tuple[str, ...]]] = {
    # scope over one unit the command touches but not another
    "AllocateYear": [("QH-01-03",), ("QH-01",)],  # the community, not the district budget
    "Transfer": [("QH-01-01",), ("QH-01-02",)],  # the source but not the target, and back
    "AssignTask": [("QH-01-01",), ("QH-01",)],  # the community, not the department's budget
}


@pytest.fixture
async def world(clock: ManualClock) -> AsyncIterator[World]:
    store = InMemoryEventStore()
    yield await build_world(store, clock)
    await store.close()


def run_as(world: World, command: Command) -> Callable[[Principal], Awaitable[Any]]:
    return lambda principal: command(world, Caller(principal, "test"))


def test_the_table_covers_every_rpc_of_the_service_and_no_command_admits_service_tokens() -> None:
    rows = {name: allowed for name, (_, allowed) in COMMANDS.items()} | QUERIES
    rows_cover_the_service(rows, pb.DESCRIPTOR.services_by_name["FundsService"])
    assert all(not allowed & {R.SERVICE, R.AUDITOR} for _, allowed in COMMANDS.values())
    assert set(PARTIAL_SCOPES) <= set(COMMANDS)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("command", sorted(COMMANDS))
async def test_each_command_admits_exactly_its_roles(
    world: World, command: str, role: Role
) -> None:
    run, allowed = COMMANDS[command]
    await admits_exactly(run_as(world, run), allowed, role, world.store.head_position)


@pytest.mark.parametrize("command", sorted(COMMANDS))
async def test_each_command_refuses_a_caller_from_another_street(
    world: World, command: str
) -> None:
    run, allowed = COMMANDS[command]
    await refuses_another_street(run_as(world, run), allowed, world.store.head_position)


@pytest.mark.parametrize(
    ("command", "scope"),
    [(command, scope) for command, scopes in PARTIAL_SCOPES.items() for scope in scopes],
)
@pytest.mark.parametrize("role", sorted(FINANCE))
async def test_a_command_touching_two_units_needs_scope_over_both(
    world: World, command: str, scope: tuple[str, ...], role: Role
) -> None:
    run, allowed = COMMANDS[command]
    await refuses_scope(run_as(world, run), allowed, scope, world.store.head_position, role)


@pytest.mark.parametrize("role", list(Role))
async def test_the_street_approval_admits_exactly_the_streets_approvers(
    world: World, role: Role
) -> None:
    def street_approval(principal: Principal) -> Awaitable[Any]:
        return world.app.approve(Caller(principal, "test"), world.big_half_approved)

    await admits_exactly(street_approval, STREET_APPROVERS, role, world.store.head_position)


@pytest.mark.parametrize("scope", [("QH-01-01",), ("QH-02",)])
async def test_the_street_approval_needs_the_street_in_scope(
    world: World, scope: tuple[str, ...]
) -> None:
    def street_approval(principal: Principal) -> Awaitable[Any]:
        return world.app.approve(Caller(principal, "test"), world.big_half_approved)

    await refuses_scope(street_approval, STREET_APPROVERS, scope, world.store.head_position)


async def test_one_person_gives_one_approval_and_never_approves_their_own_request(
    world: World,
) -> None:
    admin = Caller(Principal("admin-1", frozenset({R.DISTRICT_ADMIN}), ("QH",)), "test")
    big = await world.app.request_expenditure(
        admin, "QH-01-01", PAYEE, 30_000 * YUAN, "用房改造", "预算书", None
    )
    other = await world.app.request_expenditure(
        CLERK, "QH-01-01", PAYEE, 30_000 * YUAN, "用房改造", "预算书", None
    )
    before = await world.store.head_position()
    with pytest.raises(RuleViolation, match="cannot approve their own"):
        await world.app.approve(admin, big.id)
    await world.app.approve(admin, other.id)  # the community's approval
    after_first = await world.store.head_position()
    with pytest.raises(RuleViolation, match="admin-1 approved it for the community already"):
        await world.app.approve(admin, other.id)  # and again, for the street
    street = Caller(Principal("street-1", frozenset({R.STREET_STAFF}), ("QH-01",)), "test")
    approved = await world.app.approve(street, other.id)

    assert after_first == before + 1
    assert approved.approvals == {"community": "admin-1", "street": "street-1"}


# -- over gRPC: queries for every role, and service tokens --------------------------------

SECRET = "funds-authorization-" + "s" * 40
AUTHORITY = TokenAuthority(SECRET)


def bearer(principal: Principal) -> list[tuple[str, str]]:
    token = AUTHORITY.mint(principal.subject, principal.roles, principal.scope)
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
async def served(
    tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[pb_grpc.FundsServiceStub, Any, dict[str, Any]]]:
    settings = ServiceSettings.from_env(
        "funds", {"CIVITAS_VAR_DIR": str(tmp_path), "CIVITAS_AUTH_SECRET": SECRET}
    )
    async with (
        run_funds(settings, clock=clock, port=0) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}") as channel,
    ):
        world = await build_world(running.store, clock)
        task = await world.app.assign_task(SETUP, "survey", DEPARTMENT, "QH-01-01", "调查", 100)
        requests = {
            "GetTask": pb.GetTaskRequest(task_id=task.id),
            "GetExpenditure": pb.GetExpenditureRequest(expenditure_id=world.requested),
            "GetStatement": pb.GetStatementRequest(account_id=FUND),
            "GetTrialBalance": pb.GetTrialBalanceRequest(),
            "OpenAccount": pb.OpenAccountRequest(
                kind=pb.ACCOUNT_KIND_PAYEE, owner_code="QH", key="svc", name="x"
            ),
            "AllocateYear": pb.AllocateYearRequest(community_code="QH-01-03", year=2026),
            "Transfer": pb.TransferRequest(
                idempotency_key="svc", from_account=FUND, to_account=PAYEE, amount_fen=1
            ),
            "AssignTask": pb.AssignTaskRequest(
                idempotency_key="svc",
                department_account=DEPARTMENT,
                community_code="QH-01-01",
                title="t",
                amount_fen=1,
            ),
            "RequestExpenditure": pb.RequestExpenditureRequest(
                community_code="QH-01-01",
                payee_account=PAYEE,
                amount_fen=1,
                purpose="p",
                evidence="e",
            ),
            "ApproveExpenditure": pb.ApproveExpenditureRequest(expenditure_id=world.requested),
            "ReserveExpenditure": pb.ReserveExpenditureRequest(expenditure_id=world.approved),
            "DisburseExpenditure": pb.DisburseExpenditureRequest(expenditure_id=world.reserved),
            "VoidExpenditure": pb.VoidExpenditureRequest(expenditure_id=world.reserved, reason="r"),
            "RejectExpenditure": pb.RejectExpenditureRequest(
                expenditure_id=world.requested, reason="r"
            ),
            "CloseFiscalYear": pb.CloseFiscalYearRequest(
                account_id="fund:QH-01-01:subsidy", year=2026
            ),
        }
        yield pb_grpc.FundsServiceStub(channel), running, requests


async def test_every_query_answers_every_role(
    served: tuple[pb_grpc.FundsServiceStub, Any, dict[str, Any]],
) -> None:
    stub, _, requests = served
    answered = []
    for query, roles in QUERIES.items():
        for role in roles:
            subject = "insights" if role is R.SERVICE else f"reader-{role}"  # a service's name
            reader = Principal(subject, frozenset({role}), ("QH-02-01",))
            await getattr(stub, query)(requests[query], metadata=bearer(reader))
            answered.append((query, role))

    assert len(answered) == len(QUERIES) * len(Role)


@pytest.mark.parametrize("service", ["cases", "volunteers", "funds", "insights"])
async def test_a_service_token_runs_no_funds_command_and_stores_nothing(
    served: tuple[pb_grpc.FundsServiceStub, Any, dict[str, Any]], service: str
) -> None:
    stub, running, requests = served
    token = bearer(Principal(service, frozenset({R.SERVICE}), ("QH",)))
    refused = []
    for command in COMMANDS:
        before = await running.store.head_position()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(stub, command)(requests[command], metadata=token)
        refused.append((command, caught.value.code()))
        assert await running.store.head_position() == before, command

    assert refused == [(command, grpc.StatusCode.PERMISSION_DENIED) for command in COMMANDS]
