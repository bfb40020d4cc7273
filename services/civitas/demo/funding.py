"""The funding saga: cases asking the community fund for money, funds paying."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

import grpc

from civitas.cases.v1 import cases_pb2 as cpb
from civitas.cases.v1 import cases_pb2_grpc as cpb_grpc
from civitas.demo.funds import SUPPLIERS
from civitas.demo.plan import Plan, channel_to, plan_district
from civitas.eventkit import natural_id
from civitas.funds.v1 import funds_pb2 as fpb
from civitas.funds.v1 import funds_pb2_grpc as fpb_grpc

SAGA_REQUESTS = [  # what is broken, what mends it, what it costs in yuan
    ("小区路灯损坏，夜间出行不便", "更换路灯灯具", 1_800),
    ("楼道扶手松动，老人上下楼危险", "加固楼道扶手", 950),
    ("社区活动室漏雨", "修补活动室屋面", 4_200),
]
PENDING = cpb.FUNDING_STATUS_PENDING
Cases: TypeAlias = "cpb_grpc.CasesServiceAsyncStub"
Grid: TypeAlias = tuple[str, str, list[str]]


async def load_case_funding(
    cases_address: str, funds_address: str, token: str, approver_token: str
) -> bool:
    """A request in each of the first three communities that needs money: the case is
    taken by its grid's handler and asks the community's special fund (the saga with
    funds); someone else approves, and funds pays. The cases have fixed import ids, so
    a second run finds them and finishes only what an interrupted run left; False
    when every request had its outcome already."""
    plan, now = plan_district(), datetime.now(UTC)
    grids = [
        next(g for g in plan.grids if g[0].startswith(f"{code}-"))
        for code, _ in plan.communities[: len(SAGA_REQUESTS)]
    ]
    cases_channel = channel_to(cases_address, token)
    approving = channel_to(funds_address, approver_token)
    cases, approver = cpb_grpc.CasesServiceStub(cases_channel), fpb_grpc.FundsServiceStub(approving)
    try:
        found = [
            await _taken(cases, plan, now, n, grid, problem)
            for n, (grid, (problem, _, _)) in enumerate(zip(grids, SAGA_REQUESTS, strict=True))
        ]
        if all(c.funding and c.funding[0].status != PENDING for c in found):
            return False
        for case, (_, fix, yuan) in zip(found, SAGA_REQUESTS, strict=True):
            funding = case.funding or await _request_funds(cases, case.case_id, fix, yuan)
            await _approved(approver, funding[0].expenditure_id)
        _report([await _outcome(cases, case.case_id) for case in found])
    finally:
        await cases_channel.close(None)
        await approving.close(None)
    return True


async def _taken(
    cases: Cases, plan: Plan, now: datetime, n: int, grid: Grid, problem: str
) -> cpb.Case:
    """The case, dispatched to the grid and accepted by its handler, imported under a
    fixed source id. A second run finds it under the id cases derives from the source
    id (sending the import again would be another request under that source id: its
    times are today's, and cases refuses that)."""
    source_id = f"demo-saga-{n}"
    imported = cpb.GetCaseRequest(case_id=str(natural_id("imported-case", source_id)))
    try:
        return (await cases.GetCase(imported)).case
    except grpc.aio.AioRpcError as failed:
        if failed.code() is not grpc.StatusCode.NOT_FOUND:
            raise
    code, _, addresses = grid
    request = cpb.ImportCaseRequest(
        intake=cpb.RegisterCaseRequest(
            channel=cpb.CHANNEL_LIVELIHOOD_STATION,
            community_code=code[:8],
            address=f"{addresses[0]}1栋",
            description=problem,
            urgency=cpb.URGENCY_NORMAL,
            resident_name=plan.person(),
            resident_phone=f"139{plan.rng.randint(10_000_000, 99_999_999)}",
        ),
        category="公共设施",
        grid_code=code,
        source_id=source_id,
    )
    request.received_at.FromDatetime(now - timedelta(hours=2))
    request.dispatched_at.FromDatetime(now - timedelta(hours=1))
    return (await cases.ImportCase(request)).case


async def _request_funds(
    cases: Cases, case_id: str, fix: str, yuan: int
) -> list[cpb.FundingRequest]:
    """The case's request for money, paid to the demo's suppliers: its funding list."""
    asked = cpb.RequestFundsRequest(
        case_id=case_id,
        amount_fen=yuan * 100,
        payee_account=SUPPLIERS,
        purpose=fix,
        evidence="维修报价单",
    )
    return list((await cases.RequestFunds(asked)).case.funding)


async def _approved(approver: fpb_grpc.FundsServiceAsyncStub, expenditure_id: str) -> None:
    """Give the approval the expenditure waits for, once funds has opened it from the
    case's request. Each approval comes from another person: the demo's requests are
    below the street's threshold and need one; one above it would wait for a street
    approver (a third person) and stay pending here."""
    expenditure = fpb.GetExpenditureRequest(expenditure_id=expenditure_id)
    for _ in range(300):
        try:
            got = await approver.GetExpenditure(expenditure)
            if got.expenditure.status != fpb.EXPENDITURE_STATUS_REQUESTED:
                return  # approved, or refused by the saga: its outcome says which
            await approver.ApproveExpenditure(
                fpb.ApproveExpenditureRequest(expenditure_id=expenditure_id)
            )
        except grpc.aio.AioRpcError as refused:
            if refused.code() is grpc.StatusCode.FAILED_PRECONDITION:
                return  # decided meanwhile (the saga refused it): the outcome says
            if refused.code() is not grpc.StatusCode.NOT_FOUND:
                raise
            await asyncio.sleep(0.1)  # not opened yet


async def _outcome(cases: Cases, case_id: str) -> int:
    """The status of the case's request for money, once cases has learnt it from funds'
    events (or still pending after about 30 s)."""
    for _ in range(300):
        got = await cases.GetCase(cpb.GetCaseRequest(case_id=case_id))
        if got.case.funding[0].status != PENDING:
            break
        await asyncio.sleep(0.1)
    return int(got.case.funding[0].status)


def _report(outcomes: list[int]) -> None:
    for label, status in [
        ("requests for money asked by cases", None),
        ("of them paid by the fund", cpb.FUNDING_STATUS_GRANTED),
        ("of them refused", cpb.FUNDING_STATUS_REFUSED),
        ("of them still waiting", PENDING),
    ]:
        count = len(outcomes) if status is None else outcomes.count(status)
        if count or status in (None, cpb.FUNDING_STATUS_GRANTED):
            print(f"  {label:<34} {count:>6}", flush=True)
