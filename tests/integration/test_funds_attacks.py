"""The insider attacks of issue 15 on funds, over real gRPC servers: a community's
finance officer with a valid token tries to create money with keys the ledger has
booked already, to spend the district's budget, and a district admin tries to give
both approvals of a large expenditure. Each is refused and moves no money."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from civitas.chassis.auth import Role, TokenAuthority
from civitas.chassis.settings import ServiceSettings
from civitas.eventkit import ManualClock
from civitas.funds.bootstrap import RunningFunds, run_funds
from civitas.funds.v1 import funds_pb2 as pb
from civitas.funds.v1 import funds_pb2_grpc as pb_grpc

SECRET = "funds-attacks-" + "a" * 40
AUTHORITY = TokenAuthority(SECRET)
C = grpc.StatusCode
YUAN = 100
COMMUNITY = "QH-01-01"
FUND = f"fund:{COMMUNITY}:special"
OWN_FUND = f"fund:{COMMUNITY}:activities"  # another fund the community's finance may fill
OWN_PAYEE = f"payee:{COMMUNITY}:shop"  # paid from a fund only through an expenditure
DISTRICT_PAYEE = "payee:QH:yinfa"
DEPARTMENT = "source:QH:civil-affairs"
HUGE = 10**11  # a billion yuan


def token(who: str, role: Role, scope: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {AUTHORITY.mint(who, [role], [scope])}")]


ADMIN = token("admin-1", Role.DISTRICT_ADMIN, "QH")
INSIDER = token("finance-qh-01-01", Role.FINANCE_OFFICER, COMMUNITY)
AUDITOR = token("auditor", Role.AUDITOR, "QH")


@dataclass
class Ledger:
    stub: pb_grpc.FundsServiceStub
    running: RunningFunds
    year: int

    async def balance(self, account: str) -> int:
        reply = await self.stub.GetStatement(
            pb.GetStatementRequest(account_id=account), metadata=AUDITOR
        )
        return reply.account.balance_fen

    async def trial_total(self) -> int:
        trial = await self.stub.GetTrialBalance(pb.GetTrialBalanceRequest(), metadata=AUDITOR)
        return trial.total_fen

    async def head(self) -> int:
        return await self.running.store.head_position()

    async def refused(self, rpc: str, request: object, metadata: list[tuple[str, str]]) -> C:
        """Send a request that must be refused; its status code."""
        with pytest.raises(grpc.aio.AioRpcError) as refusal:
            await getattr(self.stub, rpc)(request, metadata=metadata)
        return refusal.value.code()


@pytest.fixture
async def ledger(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Ledger]:
    """The community's special fund for the year, another fund and a payee of its own, a
    district payee and a department's budget."""
    settings = ServiceSettings.from_env(
        "funds", {"CIVITAS_VAR_DIR": str(tmp_path), "CIVITAS_AUTH_SECRET": SECRET}
    )
    async with (
        run_funds(settings, clock=clock, port=0) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}") as channel,
    ):
        stub = pb_grpc.FundsServiceStub(channel)
        year = clock.now().year
        await stub.AllocateYear(
            pb.AllocateYearRequest(community_code=COMMUNITY, year=year), metadata=ADMIN
        )
        for kind, owner, key, name in [
            (pb.ACCOUNT_KIND_FUND, COMMUNITY, "activities", "社区活动经费"),
            (pb.ACCOUNT_KIND_PAYEE, COMMUNITY, "shop", "社区便民店"),
            (pb.ACCOUNT_KIND_PAYEE, "QH", "yinfa", "银发餐桌服务社"),
            (pb.ACCOUNT_KIND_SOURCE, "QH", "civil-affairs", "区民政局"),
        ]:
            await stub.OpenAccount(
                pb.OpenAccountRequest(kind=kind, owner_code=owner, key=key, name=name),
                metadata=ADMIN,
            )
        yield Ledger(stub, running, year)


async def test_an_allocations_key_sent_as_an_idempotency_key_creates_no_money(
    ledger: Ledger,
) -> None:
    before = await ledger.head()
    codes = [
        await ledger.refused(
            "Transfer",
            pb.TransferRequest(
                idempotency_key=f"allocation:{ledger.year}:{COMMUNITY}",
                from_account=FUND,
                to_account=payee,
                amount_fen=HUGE,
                memo="借用系统键",
            ),
            INSIDER,
        )
        for payee in (OWN_FUND, DISTRICT_PAYEE)
    ]

    assert codes == [C.FAILED_PRECONDITION, C.PERMISSION_DENIED]  # short of money; not his
    assert await ledger.head() == before
    assert [await ledger.balance(p) for p in (OWN_FUND, DISTRICT_PAYEE)] == [0, 0]
    assert await ledger.balance(FUND) == 200_000 * YUAN
    assert await ledger.trial_total() == 0


async def test_a_key_used_once_cannot_credit_another_account_or_debit_another_source(
    ledger: Ledger,
) -> None:
    first = pb.TransferRequest(
        idempotency_key="invoice-7", from_account=FUND, to_account=OWN_FUND, amount_fen=100
    )
    await ledger.stub.Transfer(first, metadata=INSIDER)
    await ledger.stub.Transfer(
        pb.TransferRequest(
            idempotency_key="grant-1", from_account=DEPARTMENT, to_account=OWN_FUND, amount_fen=50
        ),
        metadata=ADMIN,
    )
    await ledger.stub.Transfer(first, metadata=INSIDER)  # a retry: nothing more
    before = await ledger.head()
    codes = [
        await ledger.refused(
            "Transfer",
            pb.TransferRequest(
                idempotency_key="invoice-7",
                from_account=FUND,
                to_account=OWN_FUND,
                amount_fen=HUGE,  # the same accounts, another amount
            ),
            INSIDER,
        ),
        await ledger.refused(
            "Transfer",
            pb.TransferRequest(
                idempotency_key="grant-1",
                from_account="source:QH:budget",  # another source: a debit with no credit
                to_account=OWN_FUND,
                amount_fen=50,
            ),
            ADMIN,
        ),
        await ledger.refused(
            "Transfer",
            pb.TransferRequest(
                idempotency_key="invoice-7",
                from_account=FUND,
                to_account=OWN_FUND,
                amount_fen=100,
                memo="another memo",
            ),
            INSIDER,
        ),
    ]

    assert codes == [C.ALREADY_EXISTS] * 3
    assert await ledger.head() == before
    assert await ledger.balance(OWN_FUND) == 150
    assert await ledger.balance("source:QH:budget") == -200_000 * YUAN
    assert await ledger.trial_total() == 0


async def test_a_community_finance_officer_cannot_spend_the_district_budget(
    ledger: Ledger,
) -> None:
    before = await ledger.head()
    neighbour = token("finance-qh-01-02", Role.FINANCE_OFFICER, "QH-01-02")
    codes = [
        await ledger.refused(
            "AssignTask",
            pb.AssignTaskRequest(
                idempotency_key="self-assigned",
                department_account=DEPARTMENT,
                community_code=COMMUNITY,
                title="自派任务",
                amount_fen=HUGE,
            ),
            INSIDER,
        ),
        await ledger.refused(
            "AllocateYear",
            pb.AllocateYearRequest(community_code="QH-01-02", year=ledger.year),
            neighbour,
        ),
        await ledger.refused(
            "AllocateYear",
            pb.AllocateYearRequest(community_code=COMMUNITY, year=ledger.year + 1, amount_fen=HUGE),
            INSIDER,
        ),
    ]

    assert codes == [C.PERMISSION_DENIED] * 3
    assert await ledger.head() == before
    assert await ledger.balance(DEPARTMENT) == 0
    assert await ledger.balance("source:QH:budget") == -200_000 * YUAN
    assert await ledger.trial_total() == 0


async def test_one_district_admin_cannot_give_both_approvals(ledger: Ledger) -> None:
    clerk = token("clerk", Role.COMMUNITY_STAFF, COMMUNITY)
    requested = await ledger.stub.RequestExpenditure(
        pb.RequestExpenditureRequest(
            community_code=COMMUNITY,
            payee_account=DISTRICT_PAYEE,
            amount_fen=30_000 * YUAN,
            purpose="社区用房改造",
            evidence="预算书",
        ),
        metadata=clerk,
    )
    approve = pb.ApproveExpenditureRequest(expenditure_id=requested.expenditure.expenditure_id)
    await ledger.stub.ApproveExpenditure(approve, metadata=ADMIN)
    before = await ledger.head()
    code = await ledger.refused("ApproveExpenditure", approve, ADMIN)
    stored = await ledger.head() - before
    after = await ledger.stub.GetExpenditure(
        pb.GetExpenditureRequest(expenditure_id=approve.expenditure_id), metadata=AUDITOR
    )
    second_admin = token("admin-2", Role.DISTRICT_ADMIN, "QH")
    approved = await ledger.stub.ApproveExpenditure(approve, metadata=second_admin)

    assert code is C.FAILED_PRECONDITION
    assert stored == 0
    assert after.expenditure.status == pb.EXPENDITURE_STATUS_REQUESTED
    assert list(after.expenditure.approvers) == ["admin-1"]
    assert approved.expenditure.status == pb.EXPENDITURE_STATUS_APPROVED
    assert list(approved.expenditure.approvers) == ["admin-1", "admin-2"]


async def test_a_fund_pays_a_payee_only_through_an_expenditure_others_approve(
    ledger: Ledger,
) -> None:
    """A community's finance officer holds both accounts in scope, yet a transfer from the
    fund to the community's own payee would skip the approvals of an expenditure."""
    before = await ledger.head()
    for who in (INSIDER, ADMIN):
        code = await ledger.refused(
            "Transfer",
            pb.TransferRequest(
                idempotency_key="shop-invoice-1",
                from_account=FUND,
                to_account=OWN_PAYEE,
                amount_fen=10_000 * YUAN,
                memo="直接付款",
            ),
            who,
        )
        assert code is C.FAILED_PRECONDITION
    assert await ledger.head() == before
    assert (await ledger.balance(FUND), await ledger.balance(OWN_PAYEE)) == (200_000 * YUAN, 0)


DISTRICT_FINANCE = token("finance-qh", Role.FINANCE_OFFICER, "QH")


async def test_no_transfer_pays_a_payee_or_tops_up_a_fund_past_the_policy(ledger: Ledger) -> None:
    """A district finance officer acting alone: the budget paying a payee of his
    choosing, money paid to one payee moved on to another, and the special fund topped
    up past the yearly allocation by a plain transfer. Each is refused; nothing moves."""
    before = await ledger.head()
    moves = [
        ("source:QH:budget", DISTRICT_PAYEE, C.FAILED_PRECONDITION),  # paid only by expenditure
        (OWN_PAYEE, DISTRICT_PAYEE, C.FAILED_PRECONDITION),
        ("source:QH:budget", FUND, C.PERMISSION_DENIED),  # money enters the funds by policy
    ]
    for n, (source, target, code) in enumerate(moves):
        refused = await ledger.refused(
            "Transfer",
            pb.TransferRequest(
                idempotency_key=f"alone-{n}",
                from_account=source,
                to_account=target,
                amount_fen=HUGE,
                memo="一个人办",
            ),
            DISTRICT_FINANCE,
        )
        assert refused is code, (source, target)
    assert await ledger.head() == before
    assert await ledger.balance(FUND) == 200_000 * YUAN
    assert await ledger.balance(DISTRICT_PAYEE) == 0
    assert await ledger.trial_total() == 0
