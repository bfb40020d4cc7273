"""The saga between cases and funds, as its tests build it: party_orgs seeded, cases
and funds each started and stopped on their own over the same stores, the people who
ask and approve, and the steps of a case's request for money."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from civitas.cases.bootstrap import RunningCases, run_cases
from civitas.cases.v1 import cases_pb2 as cpb
from civitas.cases.v1 import cases_pb2_grpc as cpb_grpc
from civitas.chassis.auth import Role, TokenAuthority
from civitas.eventkit import EventStore, ManualClock
from civitas.funds.bootstrap import RunningFunds, run_funds
from civitas.funds.v1 import funds_pb2 as fpb
from civitas.funds.v1 import funds_pb2_grpc as fpb_grpc
from civitas.party_orgs.bootstrap import run_party_orgs
from civitas.party_orgs.v1 import party_orgs_pb2_grpc as po_grpc
from tests.support.cases_platform import SECRET, registration, settings_for
from tests.support.party_orgs_grpc import Client as PartyOrgsClient
from tests.support.party_orgs_grpc import seed
from tests.support.processes import eventually

YUAN = 100
COMMUNITY = "QH-01-01"
FUND = f"fund:{COMMUNITY}:special"
PAYEE = "payee:QH:yinfa"
AUTHORITY = TokenAuthority(SECRET)
GRANTED, REFUSED = cpb.FUNDING_STATUS_GRANTED, cpb.FUNDING_STATUS_REFUSED


def token(who: str, *roles: Role, scope: str = "QH") -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {AUTHORITY.mint(who, roles, (scope,))}")]


HANDLER = token("handler-wang", Role.GRID_WORKER, scope=COMMUNITY)
STAFF = token("clerk-li", Role.COMMUNITY_STAFF, scope=COMMUNITY)
SECRETARY = token("secretary-chen", Role.PARTY_SECRETARY, scope=COMMUNITY)
STREET = token("street-zhao", Role.STREET_STAFF, scope="QH-01")
FINANCE = token("finance-sun", Role.FINANCE_OFFICER)
AUDITOR = token("auditor", Role.AUDITOR)


@dataclass
class Services:
    """Each service can be stopped and started again on its own, over the same stores."""

    tmp_path: Path
    clock: ManualClock
    party_orgs_address: str
    extra: dict[str, str]
    cases: RunningCases | None = None
    funds: RunningFunds | None = None
    cases_stub: cpb_grpc.CasesServiceStub | None = None
    funds_stub: fpb_grpc.FundsServiceStub | None = None

    @contextlib.asynccontextmanager
    async def cases_up(self) -> AsyncIterator[cpb_grpc.CasesServiceStub]:
        settings = settings_for(
            "cases", self.tmp_path, CIVITAS_PARTY_ORGS_ADDRESS=self.party_orgs_address, **self.extra
        )
        async with (
            run_cases(settings, clock=self.clock, port=0) as running,
            grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}") as channel,
        ):
            self.cases, self.cases_stub = running, cpb_grpc.CasesServiceStub(channel)
            yield self.cases_stub

    @contextlib.asynccontextmanager
    async def funds_up(self) -> AsyncIterator[fpb_grpc.FundsServiceStub]:
        settings = settings_for("funds", self.tmp_path, **self.extra)
        async with (
            run_funds(settings, clock=self.clock, port=0) as running,
            grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}") as channel,
        ):
            self.funds, self.funds_stub = running, fpb_grpc.FundsServiceStub(channel)
            yield self.funds_stub


@contextlib.asynccontextmanager
async def district(
    tmp_path: Path, clock: ManualClock, extra: dict[str, str] | None = None
) -> AsyncIterator[Services]:
    """party_orgs seeded and running; cases and funds left for the test to start."""
    settings = settings_for("party_orgs", tmp_path, **(extra or {}))
    async with run_party_orgs(settings, clock=clock, port=0) as po:
        address = f"127.0.0.1:{po.server.port}"
        async with grpc.aio.insecure_channel(address) as channel:
            await seed(
                PartyOrgsClient(po_grpc.PartyOrgsServiceStub(channel), channel, AUTHORITY, po.store)
            )
        yield Services(tmp_path, clock, address, dict(extra or {}))


async def open_the_books(funds: fpb_grpc.FundsServiceStub) -> None:
    """The community's 200,000 yuan for the year, and a payee."""
    await funds.AllocateYear(
        fpb.AllocateYearRequest(community_code=COMMUNITY, year=2026), metadata=FINANCE
    )
    await funds.OpenAccount(
        fpb.OpenAccountRequest(
            kind=fpb.ACCOUNT_KIND_PAYEE, owner_code="QH", key="yinfa", name="银发餐桌服务社"
        ),
        metadata=FINANCE,
    )


async def case_in_progress(cases: cpb_grpc.CasesServiceStub) -> str:
    reply = await cases.RegisterCase(registration(), metadata=STAFF)
    case_id = reply.case.case_id
    await cases.ClassifyCase(
        cpb.ClassifyCaseRequest(case_id=case_id, category="助老服务", urgency=cpb.URGENCY_NORMAL),
        metadata=STAFF,
    )
    await cases.FileCase(cpb.FileCaseRequest(case_id=case_id), metadata=STAFF)
    await cases.DispatchCase(cpb.DispatchCaseRequest(case_id=case_id), metadata=STAFF)
    await cases.AcceptCase(
        cpb.AcceptCaseRequest(case_id=case_id, accepted_by="王芳"), metadata=HANDLER
    )
    return case_id


async def ask(cases: cpb_grpc.CasesServiceStub, case_id: str, yuan: int, payee: str = PAYEE) -> str:
    """The handler asks for money; the id of the expenditure funds will open for it."""
    reply = await cases.RequestFunds(
        cpb.RequestFundsRequest(
            case_id=case_id,
            amount_fen=yuan * YUAN,
            payee_account=payee,
            purpose="为独居老人购买助餐服务",
            evidence="服务社报价单 2026-031",
        ),
        metadata=HANDLER,
    )
    return reply.case.funding[-1].expenditure_id


async def funding_of(cases: cpb_grpc.CasesServiceStub, case_id: str) -> list[cpb.FundingRequest]:
    reply = await cases.GetCase(cpb.GetCaseRequest(case_id=case_id), metadata=AUDITOR)
    return list(reply.case.funding)


async def outcome(
    cases: cpb_grpc.CasesServiceStub, case_id: str, seconds: float = 15
) -> cpb.FundingRequest:
    async def recorded() -> bool:
        return (await funding_of(cases, case_id))[-1].status != cpb.FUNDING_STATUS_PENDING

    await eventually(recorded, f"the funding outcome of case {case_id}", seconds)
    return (await funding_of(cases, case_id))[-1]


async def expenditure(
    funds: fpb_grpc.FundsServiceStub, expenditure_id: str, seconds: float = 15
) -> fpb.Expenditure:
    async def opened() -> bool:
        try:
            await funds.GetExpenditure(
                fpb.GetExpenditureRequest(expenditure_id=expenditure_id), metadata=AUDITOR
            )
        except grpc.aio.AioRpcError as missing:
            if missing.code() is not grpc.StatusCode.NOT_FOUND:
                raise
            return False
        return True

    await eventually(opened, f"expenditure {expenditure_id} in funds", seconds)
    reply = await funds.GetExpenditure(
        fpb.GetExpenditureRequest(expenditure_id=expenditure_id), metadata=AUDITOR
    )
    return reply.expenditure


async def approve(
    funds: fpb_grpc.FundsServiceStub, expenditure_id: str, *who: list[tuple[str, str]]
) -> None:
    for approver in who:
        await funds.ApproveExpenditure(
            fpb.ApproveExpenditureRequest(expenditure_id=expenditure_id), metadata=approver
        )


async def balance(funds: fpb_grpc.FundsServiceStub, account: str) -> int:
    reply = await funds.GetStatement(fpb.GetStatementRequest(account_id=account), metadata=AUDITOR)
    return reply.account.balance_fen


async def event_types(store: EventStore) -> list[str]:
    return [e.type for e in await store.read_all(after=0, limit=100_000)]
