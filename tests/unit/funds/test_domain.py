"""The ledger's invariants and the expenditure flow, on the aggregates alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civitas.errors import AlreadyExists, InvalidInput, RuleViolation
from civitas.funds.domain.accounts import (
    MAX_AMOUNT_FEN,
    YUAN,
    Account,
    AccountKind,
    client_transfer_id_for,
    transfer_id_for,
)
from civitas.funds.domain.expenditures import ApprovalLevel, Expenditure, ExpenditureStatus
from civitas.funds.domain.tasks import task_id_for

NOW = datetime(2026, 6, 1, 10, tzinfo=UTC)


def accounts() -> tuple[Account, Account, Account]:
    budget = Account.open("source:QH:budget", AccountKind.SOURCE, "QH", "区财政预算")
    fund = Account.open("fund:QH-01-01:special", AccountKind.FUND, "QH-01-01", "为民服务专项资金")
    payee = Account.open("payee:p1", AccountKind.PAYEE, "QH", "社会组织")
    return budget, fund, payee


def saved(*accounts: Account) -> None:
    for account in accounts:
        account.mark_saved()


def transfer(source: Account, target: Account, amount: int, key: str) -> None:
    transfer_id = transfer_id_for(key)
    source.debit(transfer_id, amount, target.id, NOW)
    target.credit(transfer_id, amount, source.id, NOW)


def test_a_yearly_allocation_moves_money_from_the_budget_into_the_fund() -> None:
    budget, fund, _ = accounts()
    transfer(budget, fund, 200_000 * YUAN, "allocation:2026:QH-01-01")

    assert (budget.balance_fen, fund.balance_fen) == (-200_000 * YUAN, 200_000 * YUAN)


def test_a_retried_transfer_pays_once() -> None:
    budget, fund, _ = accounts()
    for _ in range(3):
        transfer(budget, fund, 1000, "allocation:2026:QH-01-01")

    assert fund.balance_fen == 1000
    assert len(fund.collect_pending()) == 2  # opened, one credit


def test_a_fund_never_goes_below_zero_counting_reservations() -> None:
    budget, fund, payee = accounts()
    transfer(budget, fund, 1000, "allocation")
    fund.reserve("t1", 700, payee.id)

    with pytest.raises(RuleViolation, match=r"3\.00 yuan available"):
        fund.reserve("t2", 301, payee.id)
    with pytest.raises(RuleViolation, match="available"):
        fund.debit("t3", 301, payee.id, NOW)
    fund.release("t1", "作废")
    fund.debit("t3", 1000, payee.id, NOW)
    assert (fund.balance_fen, fund.available_fen) == (0, 0)


def test_a_reservation_is_settled_by_the_debit_of_its_own_amount() -> None:
    budget, fund, payee = accounts()
    transfer(budget, fund, 1000, "allocation")
    fund.reserve("t1", 400, payee.id)

    with pytest.raises(AlreadyExists, match="t1 is a hold of 400 fen for payee:p1"):
        fund.debit("t1", 500, payee.id, NOW)
    with pytest.raises(AlreadyExists, match="t1 is a hold of 400 fen for payee:p1"):
        fund.debit("t1", 400, "payee:other", NOW)
    fund.debit("t1", 400, payee.id, NOW)
    assert (fund.balance_fen, fund.reserved) == (600, {})


def test_an_expenditures_payment_pays_only_what_is_still_held() -> None:
    budget, fund, payee = accounts()
    transfer(budget, fund, 1000, "allocation")
    fund.reserve("t1", 400, payee.id)
    fund.release("t1", "voided")

    with pytest.raises(RuleViolation, match="nothing is held under t1"):
        fund.debit("t1", 400, payee.id, NOW, held_only=True)
    assert (fund.balance_fen, fund.reserved) == (1000, {})


def test_amounts_are_positive_whole_fen() -> None:
    _, fund, payee = accounts()
    for bad in (0, -5, 1.5, True, MAX_AMOUNT_FEN + 1):
        with pytest.raises(InvalidInput, match=r"positive whole number of fen|at most"):
            fund.reserve("t", bad, payee.id)  # type: ignore[arg-type]


def test_a_closed_year_takes_no_more_entries_and_needs_no_pending_reservations() -> None:
    budget, fund, payee = accounts()
    transfer(budget, fund, 1000, "allocation")
    fund.reserve("t1", 10, payee.id)
    with pytest.raises(RuleViolation, match="reservations are still pending"):
        fund.close_year(2026)
    fund.release("t1", "年末作废")
    fund.close_year(2026)

    with pytest.raises(RuleViolation, match=r"2026 .* is closed"):
        fund.debit("t2", 10, payee.id, NOW)
    assert fund.closed_years == {2026: 1000}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["allocate", "spend", "reserve", "release"]),
            st.integers(1, 5000),
            st.integers(0, 20),
        ),
        max_size=60,
    )
)
def test_random_movements_keep_funds_non_negative_and_the_ledger_summing_to_zero(
    steps: list[tuple[str, int, int]],
) -> None:
    budget, fund, payee = accounts()
    for n, (kind, amount, key) in enumerate(steps):
        try:
            if kind == "allocate":
                transfer(budget, fund, amount, f"allocation-{key}")
            elif kind == "spend":
                transfer(fund, payee, amount, f"spend-{n}")
            elif kind == "reserve":
                fund.reserve(f"hold-{key}", amount, payee.id)
            else:
                fund.release(f"hold-{key}", "void")
        except (RuleViolation, AlreadyExists):  # short of money, or a key reused
            pass
        assert fund.available_fen >= 0
        assert budget.balance_fen + fund.balance_fen + payee.balance_fen == 0


def test_a_transfer_id_booked_once_books_nothing_else_and_stores_nothing() -> None:
    """The attack of issue 15: a key already booked on a fund, sent again with a new
    target and any amount, used to get the credit without the debit."""
    budget, fund, payee = accounts()
    allocation = transfer_id_for("allocation:2026:QH-01-01")
    transfer(budget, fund, 200_000 * YUAN, "allocation:2026:QH-01-01")
    saved(budget, fund, payee)

    for amount, target, memo in [
        (10**9, payee.id, ""),  # another amount and account
        (200_000 * YUAN, payee.id, ""),  # the same amount to another account
        (200_000 * YUAN, budget.id, "退回"),  # paying back, under the allocation's id
    ]:
        with pytest.raises(AlreadyExists, match=f"transfer {allocation} is a credit"):
            fund.debit(allocation, amount, target, NOW, memo)
    with pytest.raises(AlreadyExists, match=f"transfer {allocation} is a debit"):
        budget.debit(allocation, 200_000 * YUAN, fund.id, NOW, "another memo")
    with pytest.raises(AlreadyExists, match="with another memo"):
        fund.credit(allocation, 200_000 * YUAN, budget.id, NOW, "another memo")

    assert [a.collect_pending() for a in (budget, fund, payee)] == [[], [], []]
    assert budget.balance_fen + fund.balance_fen + payee.balance_fen == 0


def test_a_retry_of_the_same_booking_books_nothing_more() -> None:
    budget, fund, _ = accounts()
    transfer(budget, fund, 1000, "k")
    saved(budget, fund)
    transfer(budget, fund, 1000, "k")

    assert budget.collect_pending() == fund.collect_pending() == []
    assert (budget.balance_fen, fund.balance_fen) == (-1000, 1000)


def test_a_hold_is_bound_to_its_amount_and_payee_and_a_released_one_is_not_held_again() -> None:
    budget, fund, payee = accounts()
    transfer(budget, fund, 1000, "allocation")
    fund.reserve("t1", 400, payee.id)
    fund.reserve("t1", 400, payee.id)  # a retry
    for amount, target in [(500, payee.id), (400, "payee:other")]:
        with pytest.raises(AlreadyExists, match="t1 is a hold of 400 fen for payee:p1"):
            fund.reserve("t1", amount, target)
    fund.debit("t1", 400, payee.id, NOW, "支出")
    fund.reserve("t1", 400, payee.id)  # paid already: a late retry holds nothing
    with pytest.raises(AlreadyExists, match="t1 is a debit of 400 fen for payee:p1"):
        fund.reserve("t1", 300, payee.id)
    fund.reserve("t2", 100, payee.id)
    fund.release("t2", "作废")
    with pytest.raises(RuleViolation, match="nothing is held under t2: it was released"):
        fund.reserve("t2", 100, payee.id)

    assert (fund.balance_fen, fund.reserved) == (600, {})


def test_only_a_source_may_run_negative() -> None:
    budget, fund, payee = accounts()
    expense = Account.open("expense:QH:office", AccountKind.EXPENSE, "QH", "办公")
    transfer(budget, payee, 500, "paid")

    for account in (payee, expense, fund):
        with pytest.raises(RuleViolation, match="available"):
            account.debit("out", account.balance_fen + 1, budget.id, NOW)
    transfer(payee, budget, 500, "refund")
    assert (budget.balance_fen, payee.balance_fen) == (0, 0)


def test_a_callers_keys_never_name_a_transfer_the_system_derived() -> None:
    for key in ("allocation:2026:QH-01-01", "expenditure:e1", "task:t1", "invoice-88"):
        assert client_transfer_id_for(key) != transfer_id_for(key)
    assert client_transfer_id_for("k" * 100)


@pytest.mark.parametrize(
    "look_alike",
    [" invoice-88", "invoice-88 ", "invoice-88\n", "invoice\u200b-88", "invоice-88", "ｉnvoice-88"],
)
def test_a_key_is_taken_whole_and_a_look_alike_is_refused(look_alike: str) -> None:
    """Never trimmed, never folded: a look-alike would otherwise name the key it resembles
    (a space, a zero-width space, a Cyrillic о, a full-width ｉ)."""
    for derive in (client_transfer_id_for, task_id_for):
        with pytest.raises(InvalidInput, match="idempotency_key"):
            derive(look_alike)
    with pytest.raises(InvalidInput, match="idempotency_key"):
        client_transfer_id_for("k" * 101)


def test_a_snapshot_keeps_what_each_transfer_id_booked_and_held() -> None:
    budget, fund, payee = accounts()
    transfer(budget, fund, 1000, "allocation")
    piped = transfer_id_for("piped")  # a memo may hold the snapshot's separator
    budget.debit(piped, 5, fund.id, NOW, "a|b||c")
    fund.credit(piped, 5, budget.id, NOW, "a|b||c")
    fund.reserve("t1", 300, payee.id)
    fund.reserve("t2", 100, payee.id)
    fund.release("t2", "作废")
    restored = Account(fund.id)
    restored.restore_state(fund.snapshot_state())

    assert Account.snapshot_version == 3
    bookings = {t: restored.bookings.get(t) for t in restored.bookings}  # built when asked
    assert (bookings, restored.holds, restored.released) == (
        fund.bookings,
        fund.holds,
        fund.released,
    )
    assert restored.snapshot_state() == fund.snapshot_state()
    with pytest.raises(AlreadyExists):
        restored.debit(transfer_id_for("allocation"), 1000, payee.id, NOW)


# -- expenditures ------------------------------------------------------------------------


def expenditure(amount: int = 5_000 * YUAN, case_id: str | None = None) -> Expenditure:
    return Expenditure.request(
        "e1",
        "QH-01-01",
        "fund:QH-01-01:special",
        "payee:p1",
        amount,
        "助餐服务采购",
        "合同编号 2026-017",
        case_id,
        "requester-1",
        street_threshold_fen=20_000 * YUAN,
    )


def test_the_requester_never_approves_their_own_expenditure() -> None:
    e = expenditure()
    with pytest.raises(RuleViolation, match="requester cannot approve"):
        e.approve("requester-1", ApprovalLevel.COMMUNITY)
    e.approve("secretary-1", ApprovalLevel.COMMUNITY)
    assert e.status is ExpenditureStatus.APPROVED


def test_above_the_threshold_the_street_approves_too() -> None:
    e = expenditure(30_000 * YUAN)
    e.approve("secretary-1", ApprovalLevel.COMMUNITY)
    assert e.status is ExpenditureStatus.REQUESTED
    with pytest.raises(RuleViolation, match="approved it for the community already"):
        e.approve("secretary-2", ApprovalLevel.COMMUNITY)
    e.approve("street-1", ApprovalLevel.STREET)
    assert e.status is ExpenditureStatus.APPROVED
    with pytest.raises(RuleViolation, match="needs no street approval"):
        expenditure().approve("street-1", ApprovalLevel.STREET)


def test_each_approval_comes_from_another_person() -> None:
    e = expenditure(30_000 * YUAN)
    e.approve("admin-1", ApprovalLevel.COMMUNITY)
    with pytest.raises(RuleViolation, match="admin-1 approved it for the community already"):
        e.approve("admin-1", ApprovalLevel.STREET)
    with pytest.raises(RuleViolation, match="requester cannot approve"):
        e.approve("requester-1", ApprovalLevel.STREET)
    e.approve("admin-2", ApprovalLevel.STREET)

    assert e.status is ExpenditureStatus.APPROVED
    assert e.approvals == {ApprovalLevel.COMMUNITY: "admin-1", ApprovalLevel.STREET: "admin-2"}


def test_the_flow_reserves_then_disburses_or_voids_and_rejection_is_final() -> None:
    paid, voided, rejected = expenditure(), expenditure(), expenditure()
    for e in (paid, voided):
        e.approve("secretary-1", ApprovalLevel.COMMUNITY)
        e.mark_reserved()
    paid.mark_disbursed(NOW)
    voided.void("供应商未履约")
    rejected.reject("secretary-1", "证据不足")

    assert [e.status for e in (paid, voided, rejected)] == [
        ExpenditureStatus.DISBURSED,
        ExpenditureStatus.VOIDED,
        ExpenditureStatus.REJECTED,
    ]
    with pytest.raises(RuleViolation, match="cannot disburse an expenditure that is voided"):
        voided.mark_disbursed(NOW)
    with pytest.raises(RuleViolation, match="cannot approve"):
        rejected.approve("x", ApprovalLevel.COMMUNITY)
    assert paid.transfer_id == transfer_id_for("expenditure:e1")


def test_a_case_expenditures_outcomes_name_the_case_so_cases_can_record_them() -> None:
    paid, voided, rejected = (expenditure(case_id=f"case-{n}") for n in range(3))
    for e in (paid, voided):
        e.approve("secretary-1", ApprovalLevel.COMMUNITY)
    paid.mark_reserved()
    paid.mark_disbursed(datetime(2026, 5, 1, tzinfo=UTC))
    voided.void("余额不足")
    rejected.reject("secretary-1", "不属于专项资金范围")

    outcomes = [e.collect_pending()[-1] for e in (paid, voided, rejected)]
    assert [type(o).__name__ for o in outcomes] == [
        "ExpenditureDisbursed",
        "ExpenditureVoided",
        "ExpenditureRejected",
    ]
    assert [o.case_id for o in outcomes] == ["case-0", "case-1", "case-2"]  # type: ignore[attr-defined]
