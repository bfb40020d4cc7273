"""A randomized insider against funds (a hypothesis state machine on the application,
with a SQLite store): callers of every role, scoped to the district, a street or a
community, send random transfers, allocations, tasks and expenditures, open accounts,
and reuse and guess keys (their own, other callers', and the system's own such as
``allocation:<year>:<community>`` and ``expenditure:<id>``); the saga with cases asks
for money and settles it. After every step:

- the balances of all accounts sum to zero: money is neither created nor destroyed;
- no account's balance or holds changed, and no account was opened, unless the caller
  holds a finance role and has its owner in scope, or the step was the system's saga
  (an approved expenditure's payment credits its payee, whoever owns the payee);
- a refused call stored nothing;
- no fund, payee or expense account is below zero, counting its holds, and every hold
  belongs to a reserved expenditure;
- every approval of an expenditure comes from another person, none the requester.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from civitas.chassis.auth import Caller, Principal, Role
from civitas.errors import DomainError
from civitas.eventkit import EventFilter, InMemoryEventStore, ManualClock
from civitas.funds.application import CaseRequest, Funds
from civitas.funds.domain.accounts import YUAN, AccountKind
from civitas.funds.domain.expenditures import Expenditure, ExpenditureStatus

pytestmark = pytest.mark.timeout(900)  # a failure's shrinking may take hypothesis 5 minutes
R = Role
NOW = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
YEAR = NOW.year
COMMUNITIES = ["QH-01-01", "QH-01-02", "QH-02-01"]
SCOPES = ["QH", "QH-01", "QH-02", *COMMUNITIES]
MONEY_ROLES = {R.DISTRICT_ADMIN, R.FINANCE_OFFICER}
SYSTEM = Caller(Principal("system-admin", frozenset({R.DISTRICT_ADMIN}), ("QH",)), "setup")
BUDGET = "source:QH:budget"
DEPARTMENT = "source:QH:dept"
OPENED_AT_START = [
    (AccountKind.SOURCE, "QH", "dept", "区民政局"),
    (AccountKind.PAYEE, "QH", "vendor", "区供应商"),
    (AccountKind.PAYEE, "QH-01-01", "shop", "便民店"),
    (AccountKind.PAYEE, "QH-02-01", "shop", "便民店"),
    (AccountKind.EXPENSE, "QH-01-01", "office", "办公费"),
    (AccountKind.FUND, "QH-01-01", "subsidy", "党组织工作补助经费"),
]
UNKNOWN_ACCOUNTS = ["fund:QH-01-01:nowhere", "payee:QH:vendor:x", "fund:QH-09-09:x"]
REQUEST_IDS = [None, "6f1c0e52-1111-4a8e-9d7e-000000000001", "6f1c0e52-2222-4a8e-9d7e-000000000002"]

INSIDERS = [
    *[(R.DISTRICT_ADMIN, "QH", 0), (R.DISTRICT_ADMIN, "QH", 1), (R.FINANCE_OFFICER, "QH", 0)] * 3,
    (R.FINANCE_OFFICER, "QH-01", 0),
    (R.FINANCE_OFFICER, "QH-01-01", 0),
    (R.FINANCE_OFFICER, "QH-01-01", 1),
    (R.FINANCE_OFFICER, "QH-02-01", 0),
    (R.STREET_STAFF, "QH-01", 0),
    (R.STREET_STAFF, "QH-02", 0),
    (R.COMMUNITY_STAFF, "QH-01-01", 0),
    (R.PARTY_SECRETARY, "QH-01-01", 0),
    (R.COMMUNITY_STAFF, "QH-02-01", 0),
    (R.PARTY_SECRETARY, "QH-02-01", 0),
]  # the callers whose commands can succeed somewhere, drawn more often


def principal(role: Role, scope: str, person: int) -> Principal:
    return Principal(f"{role}-{scope}-{person}", frozenset({role}), (scope,))


insiders = st.sampled_from(INSIDERS).map(lambda who: principal(*who))
anyone = st.builds(
    principal, st.sampled_from(list(Role)), st.sampled_from(SCOPES), st.integers(0, 1)
)
callers = st.one_of(insiders, insiders, anyone)
amounts = st.one_of(
    st.sampled_from([1, 100 * YUAN, 5_000 * YUAN, 30_000 * YUAN, 250_000 * YUAN, 10**11]),
    st.integers(1, 300_000 * YUAN),
)


@dataclass(frozen=True)
class Position:
    """What the invariants compare: each account's balance and holds."""

    balance_fen: int
    holds: frozenset[tuple[str, int]]


class FundsInsider(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = InMemoryEventStore()  # the rules under test, not the storage
        self.app = Funds(self.store, ManualClock(NOW), street_threshold_fen=20_000 * YUAN)
        self.accounts: dict[str, str] = {}  # account id -> its owner
        self.expenditures: list[str] = []
        self.case_expenditures: list[str] = []
        self.keys = ["k1", "k2", "invoice-1", f"allocation:{YEAR}:QH-01-01", "task:t"]
        self.transfers: list[tuple[str, str, str, int, str]] = []  # booked: key, from, to, …
        self.read_up_to = 0
        self.known_positions: dict[str, Position] | None = None
        self.cases = 0
        self.people: dict[str, Principal] = {}  # everyone who acted, by subject

    def run(self, work: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(work)

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()

    # -- the world, and the check around every step --------------------------------------

    @initialize()
    def open_the_books(self) -> None:
        async def setup() -> None:
            for community in COMMUNITIES:
                await self.app.allocate_year(SYSTEM, community, YEAR, 0)
            for kind, owner, key, name in OPENED_AT_START:
                await self.app.open_account(SYSTEM, kind, owner, key, name)
            await self.expenditures_waiting()

        self.run(setup())
        self.positions()

    async def expenditures_waiting(self) -> None:
        """Expenditures to work on from the first step: small and large ones asked by
        insiders, one with its community's approval from a district admin, one a case's."""
        clerk, admin = principal(R.COMMUNITY_STAFF, "QH-01-01", 0), principal(*INSIDERS[0])
        for who, community, yuan in [
            (clerk, "QH-01-01", 5_000),
            (clerk, "QH-01-01", 30_000),
            (admin, "QH-02-01", 30_000),
        ]:
            self.people[who.subject] = who
            made = await self.app.request_expenditure(
                Caller(who, "setup"),
                community,
                "payee:QH:vendor",
                yuan * YUAN,
                "采购",
                "发票",
                None,
            )
            self.expenditures.append(made.id)
        await self.app.approve(Caller(admin, "setup"), self.expenditures[1])
        self.people[admin.subject] = admin
        self.cases += 1
        case = await self.app.request_for_case(
            CaseRequest(
                str(uuid.UUID(int=self.cases)),
                str(uuid.UUID(int=10**6 + self.cases)),
                "QH-01-02",
                "payee:QH:vendor",
                25_000 * YUAN,
                "维修",
                "报价单",
                principal(*INSIDERS[1]).subject,
            ),
            "setup",
        )
        self.case_expenditures.append(case.id)

    def act(
        self,
        principal: Principal | None,
        command: Callable[[], Awaitable[Any]],
        payment: tuple[str, int] | None = None,
    ) -> Any:
        """Run one caller's command (None: the system's saga) and check what it changed.
        ``payment``: the payee and amount an expenditure's payment may credit."""
        if principal is not None:
            self.people[principal.subject] = principal
        head, before = self.run(self.store.head_position()), self.positions()
        try:
            outcome = self.run(command())
        except DomainError as refusal:
            event(f"refused: {type(refusal).__name__}")
            assert self.run(self.store.head_position()) == head, "a refused call stored events"
            assert self.positions() == before, "a refused call moved money"
            return None
        event("done")
        for account, after in self.positions().items():
            if after == before.get(account, Position(0, frozenset())) and account in before:
                continue
            if principal is None:
                continue  # the saga
            credited = before.get(account, Position(0, frozenset())).balance_fen
            if payment == (account, after.balance_fen - credited) and after.holds == frozenset():
                continue  # an approved expenditure's payee, paid
            assert principal.roles & MONEY_ROLES, f"{principal.subject} changed {account}"
            assert principal.covers(self.accounts[account]), f"{principal.subject} moved {account}"
        return outcome

    def positions(self) -> dict[str, Position]:
        """Every account's position, read again only when the store has new events."""

        async def read() -> dict[str, Position]:
            stored = await self.store.read_all(after=self.read_up_to, limit=100_000)
            if not stored and self.known_positions is not None:
                return self.known_positions
            for new in stored:
                if new.type == "LedgerAccountOpened":
                    self.accounts[new.aggregate_id] = new.data["owner_code"]
            self.read_up_to = stored[-1].position if stored else self.read_up_to
            found = {}
            for account in self.accounts:
                state = await self.app.accounts.get(account)
                holds = frozenset((t, h.amount_fen) for t, h in state.holds.items())
                found[account] = Position(state.balance_fen, holds)
            self.known_positions = found
            return found

        return self.run(read())

    # -- what the insiders do --------------------------------------------------------------

    def some_accounts(self, data: st.DataObject, count: int) -> list[str]:
        """``count`` different accounts, now and then one that does not exist."""
        unknown = data.draw(st.sampled_from(UNKNOWN_ACCOUNTS))
        choices = st.sampled_from([*sorted(self.accounts), unknown])
        return data.draw(st.lists(choices, min_size=count, max_size=count, unique=True))

    def some_payee(self, data: st.DataObject) -> str:
        payees = [a for a in sorted(self.accounts) if a.startswith(("payee:", "expense:"))]
        return data.draw(
            st.one_of(st.sampled_from(payees), st.just(self.some_accounts(data, 1)[0]))
        )

    def some_key(self, data: st.DataObject) -> str:
        system = [f"expenditure:{e}" for e in self.expenditures[-3:]]
        system += [f"allocation:{YEAR}:{c}" for c in COMMUNITIES]
        return data.draw(st.sampled_from(self.keys + system))

    def some_expenditure(self, data: st.DataObject) -> str:
        known = self.expenditures + self.case_expenditures
        return data.draw(st.sampled_from([*known, *known, *known, str(uuid.UUID(int=10**9))]))

    @rule(principal=callers, data=st.data(), amount=amounts, memo=st.sampled_from(["", "m"]))
    def transfer(self, principal: Principal, data: st.DataObject, amount: int, memo: str) -> None:
        key, (source, target) = self.some_key(data), self.some_accounts(data, 2)
        self.send_transfer(principal, (key, source, target, amount, memo))

    @rule(data=st.data(), who=st.sampled_from(INSIDERS), memo=st.sampled_from(["", "m"]))
    def move_money(self, data: st.DataObject, who: tuple[Role, str, int], memo: str) -> None:
        """A transfer that can succeed: an insider moves part of what an account in their
        scope holds (a budget: any amount) to any account, under a key from the pool."""
        positions, insider = self.positions(), principal(*who)
        funded = sorted(a for a, p in positions.items() if a.startswith("source:") or p.balance_fen)
        mine = [a for a in funded if insider.covers(self.accounts[a])]
        source = data.draw(st.sampled_from(mine or funded))
        target = data.draw(st.sampled_from(sorted(set(positions) - {source})))
        held = sum(amount for _, amount in positions[source].holds)
        most = max(positions[source].balance_fen - held, 1_000 * YUAN)
        amount = data.draw(st.integers(1, most))
        self.send_transfer(insider, (self.some_key(data), source, target, amount, memo))

    @rule(
        principal=callers,
        data=st.data(),
        change=st.sampled_from(["nothing", "source", "target", "amount", "memo", "everything"]),
    )
    def reuse_a_key(self, principal: Principal, data: st.DataObject, change: str) -> None:
        """A transfer booked before, sent again by anyone: unchanged (a retry), or with
        another source, target, amount or memo."""
        if not self.transfers:
            return
        key, source, target, amount, memo = data.draw(st.sampled_from(self.transfers))
        other_source, other_target = self.some_accounts(data, 2)
        if change in ("source", "everything"):
            source = other_source
        if change in ("target", "everything"):
            target = other_target
        if change in ("amount", "everything"):
            amount = data.draw(amounts)
        if change in ("memo", "everything"):
            memo = memo + "改"
        self.send_transfer(principal, (key, source, target, amount, memo))

    def send_transfer(self, principal: Principal, request: tuple[str, str, str, int, str]) -> None:
        caller = Caller(principal, "insider")
        done = self.act(principal, lambda: self.app.transfer(caller, *request))
        if done is not None:
            self.transfers.append(request)
        self.keys.append(request[0])

    @rule(
        principal=callers,
        community=st.sampled_from([*COMMUNITIES, "QH-01-03"]),
        year=st.sampled_from([YEAR, YEAR - 1, YEAR + 1]),
        amount=st.sampled_from([0, 200_000 * YUAN, 300_000 * YUAN, 500_000 * YUAN, 10**11]),
    )
    def allocate(self, principal: Principal, community: str, year: int, amount: int) -> None:
        caller = Caller(principal, "insider")
        self.act(principal, lambda: self.app.allocate_year(caller, community, year, amount))

    @rule(
        principal=callers,
        data=st.data(),
        department=st.sampled_from([DEPARTMENT, BUDGET, "fund:QH-01-01:special"]),
        community=st.sampled_from(COMMUNITIES),
        title=st.sampled_from(["入户调查", "楼道整治"]),
        amount=amounts,
    )
    def assign_task(
        self,
        principal: Principal,
        data: st.DataObject,
        department: str,
        community: str,
        title: str,
        amount: int,
    ) -> None:
        key = data.draw(st.sampled_from(["t1", "t2", *self.keys[:3]]))
        caller = Caller(principal, "insider")
        self.act(
            principal,
            lambda: self.app.assign_task(caller, key, department, community, title, amount),
        )

    @rule(
        principal=callers,
        data=st.data(),
        community=st.sampled_from(COMMUNITIES),
        amount=amounts,
        request_id=st.sampled_from(REQUEST_IDS),
    )
    def request_expenditure(
        self,
        principal: Principal,
        data: st.DataObject,
        community: str,
        amount: int,
        request_id: str | None,
    ) -> None:
        payee = self.some_payee(data)
        caller = Caller(principal, "insider")
        made = self.act(
            principal,
            lambda: self.app.request_expenditure(
                caller, community, payee, amount, "采购", "发票", None, request_id
            ),
        )
        if made is not None and made.id not in self.expenditures:
            self.expenditures.append(made.id)

    @rule(
        principal=callers,
        data=st.data(),
        step=st.sampled_from(["approve", "reserve", "disburse", "void", "reject"]),
    )
    def expenditure_step(self, principal: Principal, data: st.DataObject, step: str) -> None:
        expenditure_id = self.some_expenditure(data)
        caller = Caller(principal, "insider")
        commands: dict[str, Callable[[], Awaitable[Any]]] = {
            "approve": lambda: self.app.approve(caller, expenditure_id),
            "reserve": lambda: self.app.reserve(caller, expenditure_id),
            "disburse": lambda: self.app.disburse(caller, expenditure_id),
            "void": lambda: self.app.void(caller, expenditure_id, "作废"),
            "reject": lambda: self.app.reject(caller, expenditure_id, "驳回"),
        }
        self.act(principal, commands[step], payment=self.payment_of(expenditure_id))

    @rule(data=st.data(), who=st.sampled_from(INSIDERS))
    def advance_an_expenditure(self, data: st.DataObject, who: tuple[Role, str, int]) -> None:
        """The step an expenditure waits for, by one of the insiders (so that flows go
        deep: approved, reserved, paid or voided); an approval now and then by someone
        who approved it already, or by its requester."""
        if not self.expenditures + self.case_expenditures:
            return
        expenditure_id = data.draw(st.sampled_from(self.expenditures + self.case_expenditures))
        found: Expenditure = self.run(self.app.expenditures.get(expenditure_id))
        involved = [found.requester, *found.approvals.values()]
        again = [self.people[p] for p in involved if p in self.people]
        acting = data.draw(st.sampled_from([principal(*who), *again]))
        caller = Caller(acting, "insider")
        commands: dict[ExpenditureStatus, Callable[[], Awaitable[Any]]] = {
            ExpenditureStatus.REQUESTED: lambda: self.app.approve(caller, expenditure_id),
            ExpenditureStatus.APPROVED: lambda: self.app.reserve(caller, expenditure_id),
            ExpenditureStatus.RESERVED: data.draw(
                st.sampled_from(
                    [
                        lambda: self.app.disburse(caller, expenditure_id),
                        lambda: self.app.void(caller, expenditure_id, "作废"),
                    ]
                )
            ),
        }
        if found.status in commands:
            payment = (found.payee_account, found.amount_fen)
            self.act(caller.principal, commands[found.status], payment=payment)

    @rule(
        data=st.data(),
        community=st.sampled_from(COMMUNITIES),
        amount=amounts,
        requester=st.sampled_from(["handler-1", "district_admin-QH-0"]),
    )
    def case_asks_for_money(
        self, data: st.DataObject, community: str, amount: int, requester: str
    ) -> None:
        self.cases += 1
        request = CaseRequest(
            expenditure_id=str(uuid.UUID(int=self.cases)),
            case_id=str(uuid.UUID(int=10**6 + self.cases)),
            community_code=community,
            payee_account=self.some_payee(data),
            amount_fen=amount,
            purpose="维修",
            evidence="报价单",
            requester=requester,
        )
        made = self.act(None, lambda: self.app.request_for_case(request, "saga"))
        if made is not None:
            self.case_expenditures.append(made.id)

    @rule(data=st.data())
    def saga_settles(self, data: st.DataObject) -> None:
        if not self.case_expenditures:
            return
        expenditure_id = data.draw(st.sampled_from(self.case_expenditures))
        self.act(None, lambda: self.app.settle_for_case(expenditure_id, "saga"))

    @rule(
        principal=callers,
        kind=st.sampled_from(list(AccountKind)),
        owner=st.sampled_from(SCOPES),
        key=st.sampled_from(["special", "budget", "extra", "vendor"]),
        name=st.sampled_from(["账户", "另一个名字"]),
    )
    def open_account(
        self, principal: Principal, kind: AccountKind, owner: str, key: str, name: str
    ) -> None:
        caller = Caller(principal, "insider")
        self.act(principal, lambda: self.app.open_account(caller, kind, owner, key, name))

    def payment_of(self, expenditure_id: str) -> tuple[str, int] | None:
        found = self.run(self.app.expenditures.find(expenditure_id))
        return None if found is None else (found.payee_account, found.amount_fen)

    # -- after every step ------------------------------------------------------------------

    @invariant()
    def money_is_neither_created_nor_destroyed_nor_overdrawn(self) -> None:
        positions = self.positions()
        assert sum(p.balance_fen for p in positions.values()) == 0
        for account, position in positions.items():
            if not account.startswith("source:"):
                held = sum(amount for _, amount in position.holds)
                assert position.balance_fen - held >= 0, f"{account} is below zero"

    @invariant()
    def every_hold_is_a_reserved_expenditures_and_every_approval_another_persons(self) -> None:
        reserved = set()
        for expenditure_id in self.expenditures + self.case_expenditures:
            expenditure: Expenditure = self.run(self.app.expenditures.get(expenditure_id))
            people = [expenditure.requester, *expenditure.approvals.values()]
            assert len(set(people)) == len(people), f"one person twice in {people}"
            if expenditure.status is ExpenditureStatus.RESERVED:
                reserved.add(expenditure.transfer_id)
        holds = {t for p in self.positions().values() for t, _ in p.holds}
        assert holds <= reserved

    @invariant()
    def payees_and_expense_accounts_are_paid_only_by_approved_expenditures(self) -> None:
        """No transfer credits one: a single finance officer could otherwise pay anyone,
        or move approved money on, with nobody else approving."""
        approved = set()
        for expenditure_id in self.expenditures + self.case_expenditures:
            expenditure: Expenditure = self.run(self.app.expenditures.get(expenditure_id))
            if expenditure.approvals:
                approved.add(expenditure.transfer_id)
        credits = self.run(
            self.store.read_all(limit=100_000, filter=EventFilter.of(event_types=["Credited"]))
        )
        for credit in credits:
            account = credit.aggregate_id
            if account.startswith(("payee:", "expense:")):
                assert credit.data["transfer_id"] in approved, f"{account} paid unapproved"


FundsInsider.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestAnInsiderCreatesNoMoneyAndMovesNothingOutsideTheirScope = FundsInsider.TestCase
