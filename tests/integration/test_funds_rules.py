"""funds' policy at the application level: the yearly allocation and its bounds, who
opens budgets, which accounts may run negative, what an expenditure may pay, and keys
and request ids bound to the request that first used them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from civitas.chassis.auth import Caller, Principal, Role
from civitas.chassis.requests import id_for
from civitas.errors import AlreadyExists, InvalidInput, NotAllowed, RuleViolation
from civitas.eventkit import EventFilter, InMemoryEventStore, ManualClock
from civitas.funds.application import MAX_ALLOCATION_FEN, YEARLY_ALLOCATION_FEN
from civitas.funds.domain.accounts import YUAN, AccountKind, client_transfer_id_for
from civitas.funds.domain.expenditures import ExpenditureStatus
from tests.support.funds_world import (
    CLERK,
    DEPARTMENT,
    FUND,
    NEIGHBOUR_FUND,
    PAYEE,
    SECRETARY,
    SETUP,
    World,
    build_world,
)

R = Role


def caller(who: str, role: Role, scope: str = "QH") -> Caller:
    return Caller(Principal(who, frozenset({role}), (scope,)), "test")


FINANCE = caller("finance-1", R.FINANCE_OFFICER)
COMMUNITY_FINANCE = caller("finance-qh-01-01", R.FINANCE_OFFICER, "QH-01-01")


@pytest.fixture
async def world(clock: ManualClock) -> AsyncIterator[World]:
    store = InMemoryEventStore()
    yield await build_world(store, clock)
    await store.close()


async def balance(world: World, account: str) -> int:
    return (await world.app.accounts.get(account)).balance_fen


async def test_the_yearly_allocation_is_the_standard_unless_a_district_admin_sets_another(
    world: World,
) -> None:
    before = await world.store.head_position()
    with pytest.raises(NotAllowed, match="only the standard 200,000 yuan"):
        await world.app.allocate_year(FINANCE, "QH-01-03", 2026, 300_000 * YUAN)
    with pytest.raises(InvalidInput, match="at most 400,000 yuan"):
        await world.app.allocate_year(SETUP, "QH-01-03", 2026, MAX_ALLOCATION_FEN + 1)
    with pytest.raises(InvalidInput, match="positive whole number"):
        await world.app.allocate_year(SETUP, "QH-01-03", 2026, -1)
    assert await world.store.head_position() == before

    await world.app.allocate_year(FINANCE, "QH-01-04", 2026, YEARLY_ALLOCATION_FEN)
    await world.app.allocate_year(SETUP, "QH-01-03", 2026, MAX_ALLOCATION_FEN)

    assert await balance(world, "fund:QH-01-04:special") == YEARLY_ALLOCATION_FEN
    assert await balance(world, "fund:QH-01-03:special") == MAX_ALLOCATION_FEN


async def test_only_the_open_fiscal_year_is_allocated_once_and_a_closed_one_not_at_all(
    world: World, clock: ManualClock
) -> None:
    year = clock.now().year
    before = await world.store.head_position()
    for other in (year - 1, year + 1):
        with pytest.raises(RuleViolation, match=f"only the open fiscal year, {year}"):
            await world.app.allocate_year(SETUP, "QH-01-03", other, 0)
    with pytest.raises(InvalidInput, match="out of range"):
        await world.app.allocate_year(SETUP, "QH-01-03", 1999, 0)
    with pytest.raises(AlreadyExists, match=f"the {year} allocation of QH-01-01 is booked"):
        await world.app.allocate_year(SETUP, "QH-01-01", year, 150_000 * YUAN)
    again = await world.app.allocate_year(FINANCE, "QH-01-01", year, 0)  # a retry
    assert await world.store.head_position() == before
    assert again.balance_fen == YEARLY_ALLOCATION_FEN

    await world.app.open_account(SETUP, AccountKind.FUND, "QH-01-05", "special", "专项资金")
    await world.app.close_year(SETUP, "fund:QH-01-05:special", year)
    closed = await world.store.head_position()
    with pytest.raises(RuleViolation, match=f"the fiscal year {year} of fund:QH-01-05"):
        await world.app.allocate_year(SETUP, "QH-01-05", year, 0)
    await world.app.close_year(SETUP, "source:QH:budget", year)
    with pytest.raises(RuleViolation, match=f"the fiscal year {year} of source:QH:budget"):
        await world.app.allocate_year(SETUP, "QH-01-06", year, 0)  # opens nothing either
    assert await world.store.head_position() == closed + 1  # the budget's close alone


async def test_a_budget_is_opened_only_by_finance_with_the_district_in_scope(
    world: World,
) -> None:
    street_finance = caller("finance-qh-01", R.FINANCE_OFFICER, "QH-01")
    before = await world.store.head_position()
    with pytest.raises(NotAllowed, match="works for QH-01, not for QH"):
        await world.app.open_account(street_finance, AccountKind.SOURCE, "QH", "mine", "私库")
    with pytest.raises(InvalidInput, match="belongs to the district, not to QH-01"):
        await world.app.open_account(street_finance, AccountKind.SOURCE, "QH-01", "mine", "私库")
    assert await world.store.head_position() == before

    opened = await world.app.open_account(FINANCE, AccountKind.SOURCE, "QH", "housing", "区住建局")
    assert (opened.kind, opened.owner_code) == (AccountKind.SOURCE, "QH")


async def test_an_account_key_is_bound_to_the_account_it_opened(world: World) -> None:
    before = await world.store.head_position()
    same = await world.app.open_account(SETUP, AccountKind.PAYEE, "QH", "yinfa", "银发餐桌服务社")
    with pytest.raises(AlreadyExists, match="payee:QH:yinfa is open already"):
        await world.app.open_account(SETUP, AccountKind.PAYEE, "QH", "yinfa", "另一家")

    assert same.id == PAYEE
    assert await world.store.head_position() == before


async def test_only_sources_run_negative_and_an_expenditure_pays_only_a_payee(
    world: World,
) -> None:
    fee = await world.app.request_expenditure(CLERK, "QH-01-01", PAYEE, 300, "服务费", "发票", None)
    await world.app.approve(SECRETARY, fee.id)
    await world.app.reserve(SETUP, fee.id)
    await world.app.disburse(SETUP, fee.id)
    before = await world.store.head_position()
    for source in (FUND, "source:QH:budget", PAYEE):  # a payee is paid by an expenditure alone
        with pytest.raises(RuleViolation, match="only through an expenditure"):
            await world.app.transfer(SETUP, f"fee-from-{source}", source, PAYEE, 300, "服务费")
    with pytest.raises(RuleViolation, match=r"payee:QH:yinfa has 3\.00 yuan available"):
        await world.app.transfer(SETUP, "tap-1", PAYEE, FUND, 301, "退款")
    with pytest.raises(RuleViolation, match="fund:QH-01-02:special is a fund account, not a"):
        await world.app.request_expenditure(
            CLERK, "QH-01-01", "fund:QH-01-02:special", 100, "调剂", "无", None
        )
    assert await world.store.head_position() == before

    await world.app.transfer(SETUP, "refund-1", PAYEE, FUND, 300, "退款")
    assert await balance(world, PAYEE) == 0


async def test_a_task_key_is_bound_to_the_whole_assignment(world: World) -> None:
    task = await world.app.assign_task(SETUP, "survey-9", DEPARTMENT, "QH-01-01", "入户调查", 800)
    before = await world.store.head_position()
    again = await world.app.assign_task(SETUP, "survey-9", DEPARTMENT, "QH-01-01", "入户调查", 800)
    for changed in [
        ("source:QH:budget", "QH-01-01", "入户调查", 800),
        (DEPARTMENT, "QH-01-02", "入户调查", 800),
        (DEPARTMENT, "QH-01-01", "另一项任务", 800),
        (DEPARTMENT, "QH-01-01", "入户调查", 10**9),
    ]:
        with pytest.raises(AlreadyExists, match="'survey-9' was used for another task"):
            await world.app.assign_task(SETUP, "survey-9", *changed)

    assert again.id == task.id
    assert await world.store.head_position() == before
    assert await balance(world, "fund:QH-01-01:tasks") == 800


async def test_a_request_id_makes_one_expenditure_even_from_concurrent_copies(
    world: World,
) -> None:
    request_id = str(uuid.uuid4())

    async def ask(amount: int) -> str:
        made = await world.app.request_expenditure(
            CLERK, "QH-01-01", PAYEE, amount, "助餐", "合同", None, request_id
        )
        return made.id

    copies = await asyncio.gather(*(ask(1000) for _ in range(5)))
    before = await world.store.head_position()
    with pytest.raises(AlreadyExists, match=f"request_id {request_id} was used for another"):
        await ask(2000)
    stream = await world.store.read_stream(f"expenditure-{copies[0]}")

    assert set(copies) == {id_for("expenditure", request_id)}
    assert [e.type for e in stream] == ["ExpenditureRequested"]
    assert await world.store.head_position() == before


async def test_a_voided_expenditure_is_never_held_again(world: World) -> None:
    await world.app.void(SETUP, world.approved, "取消")
    before = await world.store.head_position()
    with pytest.raises(
        RuleViolation, match="cannot reserve funds for an expenditure that is voided"
    ):
        await world.app.reserve(SETUP, world.approved)
    fund = await world.app.accounts.get(FUND)

    assert await world.store.head_position() == before
    assert (await world.app.get_expenditure(world.approved)).status is ExpenditureStatus.VOIDED
    assert fund.available_fen == fund.balance_fen - 700 * YUAN  # the reserved one's hold only


async def test_a_year_is_closed_only_once_it_has_begun(world: World, clock: ManualClock) -> None:
    with pytest.raises(RuleViolation, match="has not begun"):
        await world.app.close_year(SETUP, "fund:QH-01-01:subsidy", clock.now().year + 1)
    with pytest.raises(InvalidInput, match="out of range"):
        await world.app.close_year(SETUP, "fund:QH-01-01:subsidy", 0)
    closed = await world.app.close_year(COMMUNITY_FINANCE, "fund:QH-01-01:subsidy", 2025)
    assert closed.closed_years == {2025: 0}


async def test_after_a_crash_between_debit_and_credit_the_key_moves_nothing_else(
    world: World, clock: ManualClock
) -> None:
    """The transfer's own record is written before its debit: a crash that leaves the
    debit without its credit leaves the key bound to the whole movement, so reusing it
    from another source is refused, and the retry completes the transfer."""
    subsidy = "fund:QH-01-01:subsidy"
    key, now = "inv-8", clock.now()
    transfer_id = client_transfer_id_for(key)
    await world.app._bind(transfer_id, FUND, subsidy, 500, "", SETUP)  # the crashed attempt:
    await world.app.accounts.update(FUND, lambda a: a.debit(transfer_id, 500, subsidy, now))
    before = await world.store.head_position()

    with pytest.raises(AlreadyExists, match="'inv-8' was used for another transfer"):
        await world.app.transfer(SETUP, key, NEIGHBOUR_FUND, subsidy, 500, "")
    assert await world.store.head_position() == before

    await world.app.transfer(SETUP, key, FUND, subsidy, 500, "")  # the retry completes it
    opened = await world.store.read_all(filter=EventFilter.of(event_types=["LedgerAccountOpened"]))
    ids = [e.aggregate_id for e in opened]
    assert sum([await balance(world, account) for account in ids]) == 0  # the ledger sums to 0
    assert await balance(world, subsidy) == 500
