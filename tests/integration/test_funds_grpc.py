"""funds over real gRPC: the expenditure flow, idempotency, and 1,000 concurrent payments."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from civitas.chassis.auth import Role, TokenAuthority
from civitas.chassis.requests import id_for
from civitas.chassis.settings import ServiceSettings
from civitas.eventkit import ManualClock, natural_id
from civitas.funds.bootstrap import RunningFunds, run_funds
from civitas.funds.v1 import funds_pb2 as pb
from civitas.funds.v1 import funds_pb2_grpc as pb_grpc

SECRET = "funds-secret-" + "f" * 40
C = grpc.StatusCode
YUAN = 100
FUND = "fund:QH-01-01:special"
PAYEE = "payee:QH:yinfa"


@dataclass
class World:
    stub: pb_grpc.FundsServiceStub
    running: RunningFunds
    authority: TokenAuthority

    def token(
        self, *roles: Role, scope: tuple[str, ...] = ("QH",), who: str = "staff"
    ) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.authority.mint(who, roles, scope)}")]


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    settings = ServiceSettings.from_env(
        "funds", {"CIVITAS_VAR_DIR": str(tmp_path), "CIVITAS_AUTH_SECRET": SECRET}
    )
    async with run_funds(settings, clock=clock, port=0) as running:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}")
        built = World(pb_grpc.FundsServiceStub(channel), running, TokenAuthority(SECRET))
        finance = built.token(Role.FINANCE_OFFICER)
        await built.stub.AllocateYear(
            pb.AllocateYearRequest(community_code="QH-01-01", year=2026), metadata=finance
        )
        await built.stub.OpenAccount(
            pb.OpenAccountRequest(
                kind=pb.ACCOUNT_KIND_PAYEE, owner_code="QH", key="yinfa", name="银发餐桌服务社"
            ),
            metadata=finance,
        )
        yield built
        await channel.close()


async def other_fund(world: World) -> str:
    """A second fund of the community: money leaves a fund for a payee only through an
    expenditure, so transfers out of the special fund go here."""
    opened = await world.stub.OpenAccount(
        pb.OpenAccountRequest(
            kind=pb.ACCOUNT_KIND_FUND, owner_code="QH-01-01", key="activities", name="活动经费"
        ),
        metadata=world.token(Role.FINANCE_OFFICER),
    )
    return opened.account.account_id


async def balance(world: World, account: str) -> pb.Account:
    reply = await world.stub.GetStatement(
        pb.GetStatementRequest(account_id=account), metadata=world.token(Role.AUDITOR)
    )
    return reply.account


async def test_an_expenditure_goes_from_request_to_payment(world: World) -> None:
    s = world.stub
    requested = (
        await s.RequestExpenditure(
            pb.RequestExpenditureRequest(
                community_code="QH-01-01",
                payee_account=PAYEE,
                amount_fen=5_000 * YUAN,
                purpose="独居老人助餐服务采购",
                evidence="合同 2026-017",
            ),
            metadata=world.token(Role.COMMUNITY_STAFF, scope=("QH-01-01",), who="clerk"),
        )
    ).expenditure
    expenditure_id = requested.expenditure_id
    with pytest.raises(grpc.aio.AioRpcError) as own:
        await s.ApproveExpenditure(
            pb.ApproveExpenditureRequest(expenditure_id=expenditure_id),
            metadata=world.token(Role.COMMUNITY_STAFF, who="clerk"),
        )
    await s.ApproveExpenditure(
        pb.ApproveExpenditureRequest(expenditure_id=expenditure_id),
        metadata=world.token(Role.PARTY_SECRETARY, who="secretary"),
    )
    finance = world.token(Role.FINANCE_OFFICER)
    reserved = await s.ReserveExpenditure(
        pb.ReserveExpenditureRequest(expenditure_id=expenditure_id), metadata=finance
    )
    held = await balance(world, FUND)
    paid = await s.DisburseExpenditure(
        pb.DisburseExpenditureRequest(expenditure_id=expenditure_id), metadata=finance
    )
    statement = await s.GetStatement(
        pb.GetStatementRequest(account_id=PAYEE), metadata=world.token(Role.AUDITOR)
    )

    assert own.value.code() is C.FAILED_PRECONDITION
    assert "cannot approve their own" in own.value.details()
    assert reserved.expenditure.status == pb.EXPENDITURE_STATUS_RESERVED
    assert (held.balance_fen, held.available_fen) == (200_000 * YUAN, 195_000 * YUAN)
    assert paid.expenditure.status == pb.EXPENDITURE_STATUS_DISBURSED
    assert [(e.amount_fen, e.counterpart_account) for e in statement.entries] == [
        (5_000 * YUAN, FUND)
    ]
    assert (await balance(world, FUND)).balance_fen == 195_000 * YUAN


async def test_a_retried_transfer_and_a_repeated_allocation_pay_once(world: World) -> None:
    finance, other = world.token(Role.FINANCE_OFFICER), await other_fund(world)
    request = pb.TransferRequest(
        idempotency_key="invoice-88",
        from_account=FUND,
        to_account=other,
        amount_fen=123,
        memo="发票 88",
    )
    first = await world.stub.Transfer(request, metadata=finance)
    again = await world.stub.Transfer(request, metadata=finance)
    await world.stub.AllocateYear(
        pb.AllocateYearRequest(community_code="QH-01-01", year=2026), metadata=finance
    )

    assert first.transfer_id == again.transfer_id
    assert (await balance(world, other)).balance_fen == 123
    assert (await balance(world, FUND)).balance_fen == 200_000 * YUAN - 123


async def test_above_the_threshold_the_street_approves_too(world: World) -> None:
    s = world.stub
    big = (
        await s.RequestExpenditure(
            pb.RequestExpenditureRequest(
                community_code="QH-01-01",
                payee_account=PAYEE,
                amount_fen=30_000 * YUAN,
                purpose="社区用房改造",
                evidence="预算书",
            ),
            metadata=world.token(Role.COMMUNITY_STAFF, who="clerk"),
        )
    ).expenditure
    approve = pb.ApproveExpenditureRequest(expenditure_id=big.expenditure_id)
    after_community = await s.ApproveExpenditure(
        approve, metadata=world.token(Role.PARTY_SECRETARY, who="secretary")
    )
    after_street = await s.ApproveExpenditure(
        approve, metadata=world.token(Role.STREET_STAFF, scope=("QH-01",), who="street")
    )

    assert after_community.expenditure.status == pb.EXPENDITURE_STATUS_REQUESTED
    assert after_street.expenditure.status == pb.EXPENDITURE_STATUS_APPROVED


async def test_the_trial_balance_agrees_with_every_account_and_survives_a_rebuild(
    world: World,
) -> None:
    s, finance = world.stub, world.token(Role.FINANCE_OFFICER)
    for n, yuan in enumerate((1_000, 2_500)):
        requested = await s.RequestExpenditure(
            pb.RequestExpenditureRequest(
                community_code="QH-01-01",
                payee_account=PAYEE,
                amount_fen=yuan * YUAN,
                purpose="助餐服务",
                evidence=f"合同 {n}",
            ),
            metadata=world.token(Role.COMMUNITY_STAFF, who="clerk"),
        )
        expenditure_id = requested.expenditure.expenditure_id
        await s.ApproveExpenditure(
            pb.ApproveExpenditureRequest(expenditure_id=expenditure_id),
            metadata=world.token(Role.PARTY_SECRETARY, who="secretary"),
        )
        await s.ReserveExpenditure(
            pb.ReserveExpenditureRequest(expenditure_id=expenditure_id), metadata=finance
        )
    await s.DisburseExpenditure(  # the second is paid; the first stays held
        pb.DisburseExpenditureRequest(expenditure_id=requested.expenditure.expenditure_id),
        metadata=finance,
    )
    auditor = world.token(Role.AUDITOR)
    trial = await s.GetTrialBalance(pb.GetTrialBalanceRequest(), metadata=auditor)
    statements = [
        (await s.GetStatement(pb.GetStatementRequest(account_id=a.account_id), metadata=auditor))
        for a in trial.accounts
    ]
    await world.running.ledger.rebuild()
    rebuilt = await s.GetTrialBalance(pb.GetTrialBalanceRequest(), metadata=auditor)

    assert [a.account_id for a in trial.accounts] == [
        "fund:QH-01-01:special",
        PAYEE,
        "source:QH:budget",
    ]
    assert list(trial.accounts) == [statement.account for statement in statements]
    fund = trial.accounts[0]
    assert (fund.balance_fen, fund.available_fen) == (197_500 * YUAN, 196_500 * YUAN)
    assert trial.total_fen == 0
    assert rebuilt == trial


@pytest.mark.slow
async def test_a_thousand_concurrent_payments_never_overdraw_the_fund(world: World) -> None:
    finance, other = world.token(Role.FINANCE_OFFICER), await other_fund(world)
    fund_start = (await balance(world, FUND)).balance_fen
    amount = 300 * YUAN  # the fund affords two thirds of the requests

    async def pay(n: int) -> tuple[str, str | None]:
        try:
            reply = await world.stub.Transfer(
                pb.TransferRequest(
                    idempotency_key=f"payment-{n}",
                    from_account=FUND,
                    to_account=other,
                    amount_fen=amount,
                    memo=f"payment {n}",
                ),
                metadata=finance,
                timeout=120,
            )
            return "ok", reply.transfer_id
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, exc.details()

    outcomes = await asyncio.gather(*(pay(n) for n in range(1000)))
    accepted = [detail for code, detail in outcomes if code == "ok"]
    refused = [detail for code, detail in outcomes if code != "ok"]
    payee = await world.stub.GetStatement(
        pb.GetStatementRequest(account_id=other), metadata=world.token(Role.AUDITOR)
    )
    trial = await world.stub.GetTrialBalance(
        pb.GetTrialBalanceRequest(), metadata=world.token(Role.AUDITOR)
    )
    fund = await balance(world, FUND)

    assert len(accepted) == fund_start // amount
    assert {code for code, _ in outcomes if code != "ok"} == {"FAILED_PRECONDITION"}
    assert all("available" in (reason or "") for reason in refused)
    assert fund.balance_fen == fund_start - len(accepted) * amount >= 0
    assert sorted(e.transfer_id for e in payee.entries) == sorted(accepted)  # once each
    assert trial.total_fen == 0


def bad_requests() -> list[tuple[str, object, C, str]]:
    unknown = "00000000-0000-4000-8000-000000000000"
    return [
        (
            "OpenAccount",
            pb.OpenAccountRequest(
                kind=pb.ACCOUNT_KIND_FUND, owner_code="QH-01-01", key="Bad Key", name="x"
            ),
            C.INVALID_ARGUMENT,
            "short lower-case ASCII key",
        ),
        (
            "AllocateYear",
            pb.AllocateYearRequest(community_code="QH-01", year=2026),
            C.INVALID_ARGUMENT,
            "not a community",
        ),
        (
            "Transfer",
            pb.TransferRequest(
                idempotency_key="k", from_account=FUND, to_account=PAYEE, amount_fen=-5
            ),
            C.INVALID_ARGUMENT,
            "positive whole number of fen",
        ),
        (
            "Transfer",
            pb.TransferRequest(
                idempotency_key="", from_account=FUND, to_account=PAYEE, amount_fen=5
            ),
            C.INVALID_ARGUMENT,
            "idempotency_key is required",
        ),
        (
            "Transfer",
            pb.TransferRequest(
                idempotency_key="k2", from_account=FUND, to_account=PAYEE, amount_fen=10**12
            ),
            C.FAILED_PRECONDITION,
            "only through an expenditure",
        ),
        (
            "AssignTask",
            pb.AssignTaskRequest(
                idempotency_key="t",
                department_account="source:QH:x",
                community_code="QH-01-01",
                title="t",
                amount_fen=1,
            ),
            C.NOT_FOUND,
            "does not exist",
        ),
        ("GetTask", pb.GetTaskRequest(task_id=unknown), C.NOT_FOUND, "does not exist"),
        (
            "RequestExpenditure",
            pb.RequestExpenditureRequest(
                community_code="QH-01-01",
                payee_account="payee:QH:nobody",
                amount_fen=5,
                purpose="p",
                evidence="e",
            ),
            C.NOT_FOUND,
            "does not exist",
        ),
        (
            "ApproveExpenditure",
            pb.ApproveExpenditureRequest(expenditure_id=unknown),
            C.NOT_FOUND,
            "does not exist",
        ),
        (
            "ReserveExpenditure",
            pb.ReserveExpenditureRequest(expenditure_id="x"),
            C.INVALID_ARGUMENT,
            "expenditure_id",
        ),
        (
            "DisburseExpenditure",
            pb.DisburseExpenditureRequest(expenditure_id=unknown),
            C.NOT_FOUND,
            "does not exist",
        ),
        (
            "VoidExpenditure",
            pb.VoidExpenditureRequest(expenditure_id=unknown, reason="r"),
            C.NOT_FOUND,
            "does not exist",
        ),
        (
            "RejectExpenditure",
            pb.RejectExpenditureRequest(expenditure_id=""),
            C.INVALID_ARGUMENT,
            "expenditure_id is required",
        ),
        (
            "CloseFiscalYear",
            pb.CloseFiscalYearRequest(account_id="fund:QH-09-09:x", year=2026),
            C.NOT_FOUND,
            "does not exist",
        ),
        (
            "GetExpenditure",
            pb.GetExpenditureRequest(expenditure_id=unknown),
            C.NOT_FOUND,
            "does not exist",
        ),
        (
            "GetStatement",
            pb.GetStatementRequest(account_id="nope"),
            C.INVALID_ARGUMENT,
            "is not kind:owner:key",
        ),
        ("GetTrialBalance", pb.GetTrialBalanceRequest(), C.UNAUTHENTICATED, "no bearer token"),
    ]


async def test_bad_input_gets_its_code_and_a_clear_message_and_stores_nothing(
    world: World,
) -> None:
    cases = bad_requests()
    every_rpc = set(pb.DESCRIPTOR.services_by_name["FundsService"].methods_by_name)
    assert {rpc for rpc, *_ in cases} == every_rpc
    finance = world.token(Role.FINANCE_OFFICER)

    for rpc, request, code, words in cases:
        before = await world.running.store.head_position()
        metadata = [] if code is C.UNAUTHENTICATED else finance
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(world.stub, rpc)(request, metadata=metadata)
        assert (rpc, caught.value.code()) == (rpc, code), caught.value.details()
        assert words in caught.value.details(), (rpc, caught.value.details())
        assert await world.running.store.head_position() == before, rpc


async def test_a_task_enters_a_community_only_together_with_its_money(world: World) -> None:
    admin = world.token(Role.DISTRICT_ADMIN)
    await world.stub.OpenAccount(
        pb.OpenAccountRequest(
            kind=pb.ACCOUNT_KIND_SOURCE, owner_code="QH", key="civil-affairs", name="区民政局"
        ),
        metadata=admin,
    )
    request = pb.AssignTaskRequest(
        idempotency_key="elderly-survey-2026",
        department_account="source:QH:civil-affairs",
        community_code="QH-01-01",
        title="高龄老人入户调查",
        amount_fen=8_000 * YUAN,
    )

    task = (await world.stub.AssignTask(request, metadata=admin)).task
    again = (await world.stub.AssignTask(request, metadata=admin)).task
    tasks = await balance(world, "fund:QH-01-01:tasks")

    assert task.status == again.status == pb.TASK_STATUS_ACTIVE
    assert task.task_id == again.task_id
    assert tasks.balance_fen == 8_000 * YUAN  # moved once


async def test_a_task_whose_money_cannot_move_is_refused_and_stores_nothing(
    world: World, clock: ManualClock
) -> None:
    admin = world.token(Role.DISTRICT_ADMIN)
    await world.stub.OpenAccount(
        pb.OpenAccountRequest(
            kind=pb.ACCOUNT_KIND_SOURCE, owner_code="QH", key="housing", name="区住建局"
        ),
        metadata=admin,
    )
    await world.stub.OpenAccount(
        pb.OpenAccountRequest(
            kind=pb.ACCOUNT_KIND_FUND, owner_code="QH-01-01", key="tasks", name="任务经费"
        ),
        metadata=admin,
    )
    await world.stub.CloseFiscalYear(
        pb.CloseFiscalYearRequest(account_id="fund:QH-01-01:tasks", year=clock.now().year),
        metadata=admin,
    )
    before = await world.running.store.head_position()

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await world.stub.AssignTask(
            pb.AssignTaskRequest(
                idempotency_key="repairs",
                department_account="source:QH:housing",
                community_code="QH-01-01",
                title="楼道维修",
                amount_fen=100,
            ),
            metadata=admin,
        )
    task_id = str(natural_id("task", "repairs"))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await world.stub.GetTask(
            pb.GetTaskRequest(task_id=task_id), metadata=world.token(Role.AUDITOR)
        )

    assert refused.value.code() is C.FAILED_PRECONDITION
    assert "is closed" in refused.value.details()
    assert missing.value.code() is C.NOT_FOUND
    assert await world.running.store.head_position() == before
    assert (await balance(world, "source:QH:housing")).balance_fen == 0


MALFORMED_ACCOUNT_IDS = [
    "",
    "x" * 101,
    "fund:QH-01-01:" + "a" * 86,  # 100 characters, a key far too long
    "fund:QH-01-01:spe\x00cial",
    'fund:QH-01-01:"special"',
    "fund:QH-01-01:'special'",
    "fund:QH-01-01:../../etc/passwd",
    "fund/../QH-01-01:special",
    "fund:QH-01-01",
    "fund:QH-01-01:special:more",
    "FUND:QH-01-01:special",
    "fund:qh-01-01:special",
    "fund:QH-01-01:special\n",
    " fund:QH-01-01:special",
    "fund:QH-01-01:ｓｐｅｃｉａｌ",
    "wallet:QH-01-01:special",
]
WELL_FORMED_MISSING = "fund:QH-01-01:missing"


def requests_naming(account: str) -> list[tuple[str, object]]:
    """Every funds RPC that takes an account id, naming ``account`` in each place."""
    transfer = {"idempotency_key": "k", "amount_fen": 1, "memo": "m"}
    return [
        ("Transfer", pb.TransferRequest(from_account=account, to_account=PAYEE, **transfer)),
        ("Transfer", pb.TransferRequest(from_account=FUND, to_account=account, **transfer)),
        (
            "AssignTask",
            pb.AssignTaskRequest(
                idempotency_key="k",
                department_account=account,
                community_code="QH-01-01",
                title="t",
                amount_fen=1,
            ),
        ),
        (
            "RequestExpenditure",
            pb.RequestExpenditureRequest(
                community_code="QH-01-01",
                payee_account=account,
                amount_fen=1,
                purpose="p",
                evidence="e",
            ),
        ),
        ("CloseFiscalYear", pb.CloseFiscalYearRequest(account_id=account, year=2026)),
        ("GetStatement", pb.GetStatementRequest(account_id=account)),
    ]


async def test_a_malformed_account_id_is_bad_input_and_a_missing_one_not_found_never_internal(
    world: World,
) -> None:
    admin = world.token(Role.DISTRICT_ADMIN)
    seen: list[tuple[str, str, C]] = []
    for account in [*MALFORMED_ACCOUNT_IDS, WELL_FORMED_MISSING]:
        for rpc, request in requests_naming(account):
            before = await world.running.store.head_position()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await getattr(world.stub, rpc)(request, metadata=admin)
            seen.append((rpc, account, refused.value.code()))
            assert await world.running.store.head_position() == before, (rpc, account)

    assert {rpc for rpc, _, _ in seen} == {
        "Transfer",
        "AssignTask",
        "RequestExpenditure",
        "CloseFiscalYear",
        "GetStatement",
    }
    wrong = [
        (rpc, account, code)
        for rpc, account, code in seen
        if code is not (C.NOT_FOUND if account == WELL_FORMED_MISSING else C.INVALID_ARGUMENT)
    ]
    assert wrong == []


async def test_a_request_id_names_one_expenditure_and_binds_its_request(world: World) -> None:
    clerk = world.token(Role.COMMUNITY_STAFF, scope=("QH-01-01",), who="clerk")
    request_id = str(uuid.uuid4())
    request = pb.RequestExpenditureRequest(
        community_code="QH-01-01",
        payee_account=PAYEE,
        amount_fen=800 * YUAN,
        purpose="助餐服务",
        evidence="合同 2026-020",
        request_id=request_id,
    )
    first = await world.stub.RequestExpenditure(request, metadata=clerk)
    again = await world.stub.RequestExpenditure(request, metadata=clerk)
    before = await world.running.store.head_position()
    other = pb.RequestExpenditureRequest()
    other.CopyFrom(request)
    other.amount_fen = 900 * YUAN
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await world.stub.RequestExpenditure(other, metadata=clerk)
    events = await world.running.store.read_all(after=0, limit=10_000)

    assert first.expenditure.expenditure_id == id_for("expenditure", request_id)
    assert again.expenditure == first.expenditure
    assert [e.type for e in events].count("ExpenditureRequested") == 1
    assert refused.value.code() is C.ALREADY_EXISTS
    assert request_id in refused.value.details()
    assert await world.running.store.head_position() == before
