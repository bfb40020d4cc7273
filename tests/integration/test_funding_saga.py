"""The saga between cases and funds: a case asks for money, funds pays or refuses, the
case records the outcome. Real servers over gRPC, on store feeds and on Kafka, with
duplicated deliveries and services restarted in the middle."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

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
from tests.support.processes import consumed, eventually, forget_progress, publish_again

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


async def test_a_case_gets_its_money_or_a_refusal_with_the_reason(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with (
        district(tmp_path, clock) as services,
        services.funds_up() as funds,
        services.cases_up() as cases,
    ):
        await open_the_books(funds)
        paid_case, poor_case, unknown_payee_case, rejected_case = [
            await case_in_progress(cases) for _ in range(4)
        ]

        paid = await ask(cases, paid_case, 3_000)
        opened = await expenditure(funds, paid)
        with pytest.raises(grpc.aio.AioRpcError) as own:
            await approve(funds, paid, token("handler-wang", Role.PARTY_SECRETARY, scope=COMMUNITY))
        await approve(funds, paid, SECRETARY)
        paid_outcome = await outcome(cases, paid_case)

        too_much = await ask(cases, poor_case, 250_000)
        await expenditure(funds, too_much)
        await approve(funds, too_much, SECRETARY, STREET)
        poor_outcome = await outcome(cases, poor_case)

        await ask(cases, unknown_payee_case, 500, payee="payee:QH:nobody")
        nowhere_outcome = await outcome(cases, unknown_payee_case)

        refused = await ask(cases, rejected_case, 800)
        await expenditure(funds, refused)
        await funds.RejectExpenditure(
            fpb.RejectExpenditureRequest(expenditure_id=refused, reason="不属于专项资金用途"),
            metadata=SECRETARY,
        )
        rejected_outcome = await outcome(cases, rejected_case)
        fund_balance, payee_balance = await balance(funds, FUND), await balance(funds, PAYEE)

    assert (opened.case_id, opened.requester, opened.amount_fen) == (
        paid_case,
        "handler-wang",
        3_000 * YUAN,
    )
    assert own.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "requester cannot approve" in (own.value.details() or "")
    assert (paid_outcome.status, paid_outcome.amount_fen) == (GRANTED, 3_000 * YUAN)
    assert poor_outcome.status == REFUSED
    assert poor_outcome.reason.startswith("voided: not paid: fund:QH-01-01:special has")
    assert "available (balance less reservations)" in poor_outcome.reason
    assert nowhere_outcome.status == REFUSED
    assert "account payee:QH:nobody does not exist" in nowhere_outcome.reason
    assert rejected_outcome.status == REFUSED
    assert rejected_outcome.reason == "rejected: 不属于专项资金用途"
    assert (fund_balance, payee_balance) == (197_000 * YUAN, 3_000 * YUAN)


async def test_redelivered_events_and_restarts_on_both_sides_pay_once(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with district(tmp_path, clock) as services:
        async with services.funds_up() as funds:
            await open_the_books(funds)
        async with services.cases_up() as cases:  # funds is down while the case asks
            case_id = await case_in_progress(cases)
            expenditure_id = await ask(cases, case_id, 2_000)
        async with services.funds_up() as funds:  # picks the request up on start
            await expenditure(funds, expenditure_id)
            await approve(funds, expenditure_id, SECRETARY)  # cases is down: paid meanwhile

            async def paid() -> bool:
                return await balance(funds, PAYEE) == 2_000 * YUAN

            await eventually(paid, "the payment")
        async with services.funds_up() as funds, services.cases_up() as cases:
            first = await outcome(cases, case_id)  # cases picks the outcome up on start
            assert services.funds is not None
            assert services.cases is not None
            funds_before = await event_types(services.funds.store)
            cases_before = await event_types(services.cases.store)
            for runner in [*services.funds.processes, services.cases.funding_outcomes]:
                forget_progress(runner)
                await runner.catch_up()  # every event delivered a second time
            funds_redelivered = await event_types(services.funds.store)
            cases_redelivered = await event_types(services.cases.store)
            again = await ask(cases, case_id, 2_000)  # a second request, after the first
            await expenditure(funds, again)
            await approve(funds, again, SECRETARY)
            second = await outcome(cases, case_id)
            payee_balance = await balance(funds, PAYEE)
            funding = await funding_of(cases, case_id)

    assert first.status == GRANTED
    assert cases_before.count("CaseFundingGranted") == 1
    assert funds_redelivered == funds_before
    assert cases_redelivered == cases_before
    assert second.status == GRANTED
    assert again != expenditure_id
    assert payee_balance == 4_000 * YUAN
    assert [f.status for f in funding] == [GRANTED, GRANTED]


@pytest.mark.kafka
async def test_on_kafka_duplicates_and_restarts_still_pay_once_and_record_once(
    tmp_path: Path, clock: ManualClock, kafka_bootstrap: str
) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    extra = {"CIVITAS_KAFKA_BOOTSTRAP": kafka_bootstrap, "CIVITAS_KAFKA_NAMESPACE": namespace}
    async with district(tmp_path, clock, extra) as services:
        async with services.funds_up() as funds, services.cases_up() as cases:
            await open_the_books(funds)
            case_id = await case_in_progress(cases)
            expenditure_id = await ask(cases, case_id, 1_500)
            await expenditure(funds, expenditure_id, seconds=60)
        async with services.funds_up() as funds:  # cases is down while it is approved
            await approve(funds, expenditure_id, SECRETARY)
        async with services.funds_up() as funds, services.cases_up() as cases:
            first = await outcome(cases, case_id, seconds=60)
            assert services.funds is not None
            assert services.cases is not None
            funds_store, cases_store = services.funds.store, services.cases.store
            funds_before, cases_before = (
                await event_types(funds_store),
                await event_types(cases_store),
            )
            await publish_again(cases_store, "cases", kafka_bootstrap, namespace)
            await publish_again(funds_store, "funds", kafka_bootstrap, namespace)
            await consumed(kafka_bootstrap, namespace)  # the duplicates reached them all
        async with services.funds_up() as funds, services.cases_up() as cases:
            await asyncio.sleep(3)  # and nothing is done again after a restart
            assert services.funds is not None
            assert services.cases is not None
            funds_after = await event_types(services.funds.store)
            cases_after = await event_types(services.cases.store)
            payee_balance = await balance(funds, PAYEE)

    assert first.status == GRANTED
    assert funds_after == funds_before
    assert cases_after == cases_before
    assert cases_after.count("CaseFundingGranted") == 1
    assert payee_balance == 1_500 * YUAN


async def test_only_expenditures_the_saga_opened_are_paid_on_approval(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with district(tmp_path, clock) as services, services.funds_up() as funds:
        await open_the_books(funds)
        manual = await funds.RequestExpenditure(  # names a case, but a person asked
            fpb.RequestExpenditureRequest(
                community_code=COMMUNITY,
                payee_account=PAYEE,
                amount_fen=700 * YUAN,
                purpose="采购",
                evidence="合同",
                case_id=str(uuid.uuid4()),
            ),
            metadata=STAFF,
        )
        expenditure_id = manual.expenditure.expenditure_id
        await approve(funds, expenditure_id, SECRETARY)
        assert services.funds is not None
        await services.funds.processes[1].catch_up()  # the settlement has seen the approval
        after = await expenditure(funds, expenditure_id)
        payee_balance = await balance(funds, PAYEE)

    assert after.status == fpb.EXPENDITURE_STATUS_APPROVED  # left to a finance officer
    assert payee_balance == 0


async def test_a_void_interrupted_before_its_release_is_finished_when_asked_again(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with district(tmp_path, clock) as services, services.funds_up() as funds:
        await open_the_books(funds)
        requested = await funds.RequestExpenditure(
            fpb.RequestExpenditureRequest(
                community_code=COMMUNITY,
                payee_account=PAYEE,
                amount_fen=900 * YUAN,
                purpose="采购",
                evidence="合同",
            ),
            metadata=STAFF,
        )
        expenditure_id = requested.expenditure.expenditure_id
        await approve(funds, expenditure_id, SECRETARY)
        await funds.ReserveExpenditure(
            fpb.ReserveExpenditureRequest(expenditure_id=expenditure_id), metadata=FINANCE
        )
        assert services.funds is not None
        app = services.funds.app
        await app.expenditures.update(expenditure_id, lambda e: e.void("停电"))  # then a crash
        held = await funds.GetStatement(fpb.GetStatementRequest(account_id=FUND), metadata=AUDITOR)
        await funds.VoidExpenditure(
            fpb.VoidExpenditureRequest(expenditure_id=expenditure_id, reason="停电"),
            metadata=FINANCE,
        )
        released = await funds.GetStatement(
            fpb.GetStatementRequest(account_id=FUND), metadata=AUDITOR
        )

    assert held.account.available_fen == held.account.balance_fen - 900 * YUAN
    assert released.account.available_fen == released.account.balance_fen
