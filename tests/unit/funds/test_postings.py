"""What each funds event does to an account is written once (``civitas.funds.postings``):
for histories built through funds' application that cover every funds event, funds'
views (statements, the trial balance) and insights' statements and scorecards agree on
balances, holds, entries, allocations and payments."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from civitas.chassis.auth import Caller, Principal, Role
from civitas.errors import RuleViolation
from civitas.eventkit import DomainEvent, EventStore, InMemoryEventStore, ManualClock
from civitas.funds import postings
from civitas.funds.domain import accounts as accounts_module
from civitas.funds.domain import expenditures as expenditures_module
from civitas.funds.domain import tasks as tasks_module
from civitas.funds.domain import transfers as transfers_module
from civitas.funds.domain.accounts import YUAN, AccountKind
from civitas.funds.domain.expenditures import ExpenditureStatus
from civitas.funds.domain.tasks import Task, task_id_for
from civitas.funds.ledger import Ledger, LedgerQueries
from civitas.funds.views import FundsViews
from civitas.insights import projections as insights_projections
from civitas.insights.projections import FundLedger, units
from civitas.insights.queries import InsightsQueries
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

FINANCE = Caller(Principal("finance-1", frozenset({Role.FINANCE_OFFICER}), ("QH",)), "test")
EXPENSE = "expense:QH-01-01:repairs"
UNITS = {"QH": None, "QH-01": "QH", "QH-01-01": "QH-01", "QH-01-02": "QH-01"}
FUNDS_EVENTS = {
    cls.event_type
    for module in (accounts_module, expenditures_module, tasks_module, transfers_module)
    for cls in vars(module).values()
    if isinstance(cls, type) and issubclass(cls, DomainEvent) and cls.__module__ == module.__name__
}


@dataclass
class History:
    """A funds world taken through every step, and the expenditures it made."""

    world: World
    expenditures: list[str] = field(default_factory=list)


async def every_step(world: World) -> History:
    """Rejected, paid to a payee and to an expense account, voided, left held; moved
    between funds, refunded, brought in from a budget; a task funded and a task
    cancelled; a year closed."""
    app, history = world.app, History(world)
    history.expenditures += [
        world.requested,
        world.approved,
        world.reserved,
        world.big_half_approved,
    ]
    await app.reject(SECRETARY, world.requested, "重复申请")
    await app.reserve(SETUP, world.approved)
    await app.disburse(SETUP, world.approved)
    await app.void(SETUP, world.reserved, "活动取消")
    await app.open_account(SETUP, AccountKind.EXPENSE, "QH-01-01", "repairs", "维修费")
    for payee, yuan, settle in ((EXPENSE, 900, True), (PAYEE, 800, False)):
        requested = await app.request_expenditure(
            CLERK, "QH-01-01", payee, yuan * YUAN, "维修", "发票", None
        )
        await app.approve(SECRETARY, requested.id)
        await app.reserve(SETUP, requested.id)  # the payee's stays held
        if settle:
            await app.disburse(SETUP, requested.id)
        history.expenditures.append(requested.id)
    await app.transfer(FINANCE, "between-funds", FUND, NEIGHBOUR_FUND, 1_000 * YUAN, "调剂")
    await app.transfer(FINANCE, "refund", PAYEE, FUND, 100 * YUAN, "退款")
    await app.transfer(SETUP, "from-budget", DEPARTMENT, NEIGHBOUR_FUND, 5_000 * YUAN, "拨款")
    await app.assign_task(SETUP, "task-1", DEPARTMENT, "QH-01-01", "助老", 3_000 * YUAN)
    await cancelled_task(world)
    return history


async def cancelled_task(world: World) -> None:
    """A task recorded by an interrupted run, whose money can no longer move when the
    assignment is retried (the department's year closed meanwhile)."""
    app, year = world.app, world.app.clock.now().year
    recorded = Task.assign(task_id_for("task-2"), DEPARTMENT, "QH-01-02", "环境整治", 2_000 * YUAN)
    await app.tasks.create_or_fetch(recorded, SETUP.metadata)
    await app.close_year(SETUP, DEPARTMENT, year)
    with pytest.raises(RuleViolation, match="is closed"):
        await app.assign_task(SETUP, "task-2", DEPARTMENT, "QH-01-02", "环境整治", 2_000 * YUAN)


@dataclass
class ReadSides:
    funds: FundsViews
    insights: InsightsQueries


async def nothing_to_wait_for() -> None:
    return None


async def project(store: EventStore, engine: sa.Engine) -> None:
    """Apply every stored event to funds' ledger and insights' fund ledger, and register
    the units scorecards group by."""
    ledger, facts, after = Ledger(), FundLedger(), 0
    with engine.begin() as conn:
        ledger.create(conn)
        insights_projections.metadata.create_all(conn)
        for code, parent in UNITS.items():
            kind = {None: "district", "QH": "street"}.get(parent, "community")
            conn.execute(
                units.insert().values(
                    code=code, kind=kind, name=code, parent_code=parent, population=1
                )
            )
        while batch := await store.read_all(after=after):
            for event in batch:
                ledger.apply(event, conn)
                facts.apply(event, conn)
            after = batch[-1].position


@pytest.fixture
async def history(clock: ManualClock) -> AsyncIterator[tuple[History, ReadSides]]:
    store = InMemoryEventStore()
    history = await every_step(await build_world(store, clock))
    engine = sa.create_engine(
        "sqlite://", poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False}
    )
    await project(store, engine)
    views = FundsViews(history.world.app, LedgerQueries(engine), nothing_to_wait_for)
    yield history, ReadSides(views, InsightsQueries(engine, clock))
    engine.dispose()
    await store.close()


async def test_the_history_covers_every_funds_event(
    history: tuple[History, ReadSides],
) -> None:
    store = history[0].world.store
    seen = {event.type for event in await store.read_all(limit=10_000)}
    assert seen == FUNDS_EVENTS


async def test_funds_and_insights_agree_on_every_account_its_holds_and_entries(
    history: tuple[History, ReadSides],
) -> None:
    read = history[1]
    trial = await read.funds.trial_balance()
    assert trial.total_fen == 0
    for line in trial.accounts:
        account, entries = await read.funds.statement(line.id, None)
        held = account.balance_fen - account.available_fen
        seen = await read.insights.fund_statement(line.id)
        assert (line.balance_fen, line.balance_fen - line.available_fen) == (
            account.balance_fen,
            held,
        )
        assert (seen.balance_fen, seen.reserved_fen) == (account.balance_fen, held)
        assert [
            (e["transfer_id"], e["amount_fen"], e["counterpart"], e["memo"]) for e in seen.entries
        ] == [(e.transfer_id, e.amount_fen, e.counterpart_account, e.memo) for e in entries]
        running = list(itertools.accumulate(e.amount_fen for e in entries))
        assert [e["balance_fen"] for e in seen.entries] == running


@pytest.mark.parametrize("code", sorted(UNITS))
async def test_a_scorecard_s_funds_figures_are_those_of_funds_own_views(
    history: tuple[History, ReadSides], code: str
) -> None:
    story, read = history
    trial = await read.funds.trial_balance()
    kinds = {line.id: line.kind for line in trial.accounts}
    in_unit = [
        line.id
        for line in trial.accounts
        if line.kind is AccountKind.FUND and f"{line.owner_code}-".startswith(f"{code}-")
    ]
    balance = held = allocated = 0
    for account_id in in_unit:
        account, entries = await read.funds.statement(account_id, None)
        balance += account.balance_fen
        held += account.balance_fen - account.available_fen
        allocated += sum(
            e.amount_fen
            for e in entries
            if e.amount_fen > 0 and kinds[e.counterpart_account] is AccountKind.SOURCE
        )
    paid = [await read.funds.expenditure(e) for e in story.expenditures]
    disbursed = sum(
        e.amount_fen
        for e in paid
        if e.status is ExpenditureStatus.DISBURSED and f"{e.community_code}-".startswith(f"{code}-")
    )

    card = await read.insights.scorecard(code)

    figures = (
        card.funds_balance_fen,
        card.funds_committed_fen,
        card.funds_allocated_fen,
        card.funds_disbursed_fen,
    )
    assert figures == (balance, held, allocated, disbursed)
    if code != "QH-01-02":  # the community that pays and holds
        assert held > 0
        assert disbursed > 0
        assert allocated > 0


def test_a_posting_is_an_allocation_a_payment_or_a_transfer() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)

    def kind(amount: int, counterpart: str) -> postings.Kind:
        return postings.Posted("t", amount, counterpart, at, "").kind

    assert kind(5, "source:QH:budget") is postings.Kind.ALLOCATION
    assert kind(-5, "payee:QH:yinfa") is postings.Kind.DISBURSEMENT
    assert kind(-5, "expense:QH-01-01:repairs") is postings.Kind.DISBURSEMENT
    assert kind(-5, "source:QH:budget") is postings.Kind.TRANSFER  # returned to a budget
    assert kind(5, "payee:QH:yinfa") is postings.Kind.TRANSFER  # a refund
    assert kind(5, "fund:QH-01-02:special") is postings.Kind.TRANSFER
    assert {k.value for k in AccountKind} >= postings.BUDGETS | postings.PAID_OUT_TO
