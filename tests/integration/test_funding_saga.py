"""The saga between cases and funds: a case asks for money, funds pays or refuses, the
case records the outcome. Real servers over gRPC, on store feeds and on Kafka, with
duplicated deliveries and services restarted in the middle."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from civitas.chassis.auth import Role
from civitas.eventkit import ManualClock
from civitas.funds.v1 import funds_pb2 as fpb
from tests.support.funding_saga import (
    AUDITOR,
    COMMUNITY,
    FINANCE,
    FUND,
    GRANTED,
    PAYEE,
    REFUSED,
    SECRETARY,
    STAFF,
    STREET,
    YUAN,
    approve,
    ask,
    balance,
    case_in_progress,
    district,
    event_types,
    expenditure,
    funding_of,
    open_the_books,
    outcome,
    token,
)
from tests.support.processes import consumed, eventually, forget_progress, publish_again


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
            assert services.funds is not None
            assert services.cases is not None
            await publish_again(services.cases.store, "cases", kafka_bootstrap, namespace)
            await publish_again(services.funds.store, "funds", kafka_bootstrap, namespace)
            await consumed(kafka_bootstrap, namespace)  # the restarted consumers are past it all
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
