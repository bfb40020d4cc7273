"""A year of community funds: special funds, the party-work subsidy, and expenditures
requested, approved by someone else, reserved and disbursed."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any, TypeAlias

from civitas.demo.plan import Loader, channel_to, missing, plan_district, spread
from civitas.funds.v1 import funds_pb2 as fpb
from civitas.funds.v1 import funds_pb2_grpc as fpb_grpc

SUBSIDY_FEN = 665_500_000  # the seed: 6,655,000 yuan of party-work subsidy in 2014
PURPOSES = ["老年助餐补贴", "楼道照明维修", "社区文体活动器材", "困难家庭慰问", "议事会场地布置"]
# Accounts are named kind:owner:key (README, funds): the district's budget, where the
# subsidy comes from, and a community's special fund, which AllocateYear opens.
DISTRICT_BUDGET = "source:QH:budget"
PAYEE = fpb.OpenAccountRequest(
    kind=fpb.ACCOUNT_KIND_PAYEE, owner_code="QH", key="suppliers", name="社区服务供应商"
)
SUPPLIERS = "payee:QH:suppliers"  # PAYEE's account
Stub: TypeAlias = "fpb_grpc.FundsServiceAsyncStub"


def special_fund_of(community_code: str) -> str:
    """A community's special fund, by the published naming."""
    return f"fund:{community_code}:special"


async def load_funds(address: str, token: str, approver_token: str, expenditures: int) -> bool:
    """A year's money for every community: the 200,000-yuan special fund, the seed's
    party-work subsidy spread over the communities, and small expenditures requested,
    approved by someone else, reserved and disbursed. False (and nothing changed) when
    the first community's special fund exists already."""
    rng, year = random.Random(200_000), datetime.now(UTC).year
    communities = [code for code, _ in plan_district().communities]
    channel, approving = channel_to(address, token), channel_to(address, approver_token)
    load = Loader(fpb_grpc.FundsServiceStub(channel), concurrency=8)
    approver = fpb_grpc.FundsServiceStub(approving)
    try:
        first = fpb.GetStatementRequest(account_id=special_fund_of(communities[0]))
        if not await missing(load.stub.GetStatement(first)):
            return False
        await _allocations(load, communities, year)
        payee = (await load.stub.OpenAccount(PAYEE)).account.account_id
        await _expenditures(
            load, approver, payee, [rng.choice(communities) for _ in range(expenditures)], rng
        )
        balance = await load.stub.GetTrialBalance(fpb.GetTrialBalanceRequest())
        print(f"  {'trial balance (fen, zero)':<34} {balance.total_fen:>6}", flush=True)
    finally:
        await channel.close(None)
        await approving.close(None)
    return True


async def _allocations(load: Loader[Stub], communities: list[str], year: int) -> None:
    """This year's special fund for each community, and its share of the subsidy."""
    s = load.stub
    await load.each(
        f"community special funds ({year})",
        communities,
        lambda c: s.AllocateYear(fpb.AllocateYearRequest(community_code=c, year=year)),
    )
    subsidy_funds = await load.each(
        "party-work subsidy funds",
        communities,
        lambda c: s.OpenAccount(
            fpb.OpenAccountRequest(
                kind=fpb.ACCOUNT_KIND_FUND, owner_code=c, key="subsidy", name="党组织工作补助经费"
            )
        ),
    )
    shares = spread(SUBSIDY_FEN, len(communities))
    await load.each(
        "party-work subsidies paid",
        list(zip(subsidy_funds, shares, strict=True)),
        lambda fund_share: s.Transfer(
            fpb.TransferRequest(
                idempotency_key=f"demo-subsidy-{year}-{fund_share[0].account.owner_code}",
                from_account=DISTRICT_BUDGET,
                to_account=fund_share[0].account.account_id,
                amount_fen=fund_share[1],
                memo=f"{year}年社区党组织工作补助经费",
            )
        ),
    )


async def _expenditures(
    load: Loader[Stub], approver: Stub, payee: str, communities: list[str], rng: random.Random
) -> None:
    """An expenditure from each community's special fund to the payee, in turn requested,
    approved by the approver, reserved and disbursed."""
    s = load.stub

    async def spend(community: str) -> Any:
        requested = await s.RequestExpenditure(
            fpb.RequestExpenditureRequest(
                community_code=community,
                payee_account=payee,
                amount_fen=rng.randint(50, 2_000) * 100,
                purpose=rng.choice(PURPOSES),
                evidence="发票及验收单",
            )
        )
        spent = requested.expenditure.expenditure_id
        await approver.ApproveExpenditure(fpb.ApproveExpenditureRequest(expenditure_id=spent))
        await s.ReserveExpenditure(fpb.ReserveExpenditureRequest(expenditure_id=spent))
        return await s.DisburseExpenditure(fpb.DisburseExpenditureRequest(expenditure_id=spent))

    await load.each("expenditures disbursed", communities, spend)
