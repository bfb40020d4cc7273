"""funds commands: authorize, then move money only through idempotent double entries."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from civitas.chassis.auth import Caller, Principal, Role, authorize
from civitas.errors import InvalidInput, NotFound, RuleViolation
from civitas.eventkit import (
    AggregateNotFound,
    Clock,
    ConcurrencyError,
    EventStore,
    KeyedLocks,
    RecordedEvent,
    Repository,
)
from civitas.eventkit.ids import new_uuid
from civitas.geography import UnitKind, parse_unit_code, street_of

from .domain.accounts import YUAN, Account, AccountKind, check_amount, transfer_id_for
from .domain.expenditures import ApprovalLevel, Expenditure, ExpenditureStatus
from .domain.tasks import Task, task_id_for

A = TypeVar("A", Account, Expenditure)
R = Role
FINANCE = {R.DISTRICT_ADMIN, R.FINANCE_OFFICER}
REQUESTERS = {
    R.DISTRICT_ADMIN,
    R.STREET_STAFF,
    R.COMMUNITY_STAFF,
    R.PARTY_SECRETARY,
    R.FINANCE_OFFICER,
    R.SERVICE,
}
COMMUNITY_APPROVERS = {R.DISTRICT_ADMIN, R.COMMUNITY_STAFF, R.PARTY_SECRETARY}
STREET_APPROVERS = {R.DISTRICT_ADMIN, R.STREET_STAFF}
YEARLY_ALLOCATION_FEN = 200_000 * YUAN
SAGA = Principal("funds", frozenset({R.SERVICE}), ("QH",))
_KEY = re.compile(r"^[a-z][a-z0-9_.-]{0,40}$")


@dataclass(frozen=True, slots=True)
class CaseRequest:
    """A case's request for money, as cases' ``CaseFundingRequested`` states it."""

    expenditure_id: str
    case_id: str
    community_code: str
    payee_account: str
    amount_fen: int
    purpose: str
    evidence: str
    requester: str


def account_id(kind: AccountKind, owner_code: str, key: str) -> str:
    """``kind:owner:key``, e.g. ``fund:QH-01-01:special``."""
    parse_unit_code(owner_code)
    if not _KEY.fullmatch(key or ""):
        raise InvalidInput(f"account key {key!r} is not a short lower-case ASCII key")
    return f"{kind.value}:{owner_code}:{key}"


def special_fund_of(community_code: str) -> str:
    return account_id(AccountKind.FUND, community_code, "special")


DISTRICT_BUDGET = "source:QH:budget"


class Funds:
    """The funds application service."""

    def __init__(self, store: EventStore, clock: Clock, street_threshold_fen: int) -> None:
        self.accounts = Repository(store, Account)
        self.expenditures = Repository(store, Expenditure)
        self.tasks = Repository(store, Task)
        self.store = store
        self.clock = clock
        self.street_threshold_fen = street_threshold_fen
        self.locks = KeyedLocks()

    async def open_account(
        self, caller: Caller, kind: AccountKind, owner_code: str, key: str, name: str
    ) -> Account:
        authorize(caller.principal, FINANCE, owner_code)
        return await self._open(account_id(kind, owner_code, key), kind, owner_code, name, caller)

    async def allocate_year(
        self, caller: Caller, community_code: str, year: int, amount_fen: int
    ) -> Account:
        """The yearly special fund of a community; its key makes it once per year."""
        if parse_unit_code(community_code)[0] is not UnitKind.COMMUNITY:
            raise InvalidInput(f"{community_code} is not a community's code")
        if not 2000 <= year <= self.clock.now().year + 1:
            raise InvalidInput(f"year {year} is out of range")
        authorize(caller.principal, FINANCE, community_code)
        await self._open(DISTRICT_BUDGET, AccountKind.SOURCE, "QH", "区财政预算", caller)
        fund = special_fund_of(community_code)
        await self._open(fund, AccountKind.FUND, community_code, "为民服务专项资金", caller)
        await self._move(
            f"allocation:{year}:{community_code}",
            DISTRICT_BUDGET,
            fund,
            amount_fen or YEARLY_ALLOCATION_FEN,
            f"{year}年为民服务专项资金",
            caller,
        )
        return await self.accounts.get(fund)

    async def transfer(
        self,
        caller: Caller,
        idempotency_key: str,
        from_account: str,
        to_account: str,
        amount_fen: int,
        memo: str,
    ) -> tuple[str, Account, Account]:
        source = await self._account(from_account, RuleViolation)
        authorize(caller.principal, FINANCE, source.owner_code)
        transfer_id = transfer_id_for(idempotency_key)
        paying, receiving = await self._move_id(
            transfer_id, from_account, to_account, amount_fen, memo, caller
        )
        return transfer_id, paying, receiving

    async def request_expenditure(
        self,
        caller: Caller,
        community_code: str,
        payee: str,
        amount_fen: int,
        purpose: str,
        evidence: str,
        case_id: str | None,
    ) -> Expenditure:
        if parse_unit_code(community_code)[0] is not UnitKind.COMMUNITY:
            raise InvalidInput(f"{community_code} is not a community's code")
        authorize(caller.principal, REQUESTERS, community_code)
        await self._account(special_fund_of(community_code), RuleViolation)
        await self._account(payee, RuleViolation)
        expenditure = Expenditure.request(
            str(new_uuid()),
            community_code,
            special_fund_of(community_code),
            payee,
            amount_fen,
            purpose,
            evidence,
            case_id,
            caller.principal.subject,
            self.street_threshold_fen,
        )
        await self.expenditures.save(expenditure, caller.metadata)
        return expenditure

    async def approve(self, caller: Caller, expenditure_id: str) -> Expenditure:
        expenditure = await self._expenditure(expenditure_id)
        level = self._approval_level(caller.principal, expenditure)
        scope = (
            expenditure.community_code
            if level is ApprovalLevel.COMMUNITY
            else street_of(expenditure.community_code) or "QH"
        )
        authorize(
            caller.principal,
            COMMUNITY_APPROVERS if level is ApprovalLevel.COMMUNITY else STREET_APPROVERS,
            scope,
        )
        return await self._update(
            self.expenditures,
            expenditure,
            lambda e: e.approve(caller.principal.subject, level),
            caller,
        )

    async def reserve(self, caller: Caller, expenditure_id: str) -> Expenditure:
        """Hold the money on the fund, then mark the expenditure reserved; a retry after
        a crash between the two finds the hold and completes."""
        expenditure = await self._finance(caller, expenditure_id)
        await self._hold(expenditure, caller)
        return await self._update(
            self.expenditures, expenditure, lambda e: e.mark_reserved(), caller
        )

    async def disburse(self, caller: Caller, expenditure_id: str) -> Expenditure:
        expenditure = await self._finance(caller, expenditure_id)
        if expenditure.status is not ExpenditureStatus.RESERVED:
            raise RuleViolation(f"cannot disburse an expenditure that is {expenditure.status}")
        await self._pay(expenditure, caller)
        now = self.clock.now()
        return await self._update(
            self.expenditures, expenditure, lambda e: e.mark_disbursed(now), caller
        )

    async def void(self, caller: Caller, expenditure_id: str, reason: str) -> Expenditure:
        """Void it and release its hold; refused once its money has moved (a payment is
        corrected by a reversing transfer, never unsaid). Both happen under the fund's
        lock, which a payment takes too, and a payment pays only what is still held.
        Asked again for a voided one, it finishes a release a crash interrupted."""
        expenditure = await self._finance(caller, expenditure_id)
        async with self.locks.hold(expenditure.fund_account):
            fund = await self._account(expenditure.fund_account, RuleViolation)
            if expenditure.transfer_id in fund.entries:
                raise RuleViolation(f"expenditure {expenditure_id} is paid already")
            if expenditure.status is not ExpenditureStatus.VOIDED:  # else: finish its release
                expenditure = await self._update(
                    self.expenditures, expenditure, lambda e: e.void(reason), caller
                )
            await self.accounts.update(
                expenditure.fund_account,
                lambda f: f.release(expenditure.transfer_id, reason),
                caller.metadata,
                loaded=fund,
            )
        return expenditure

    async def reject(self, caller: Caller, expenditure_id: str, reason: str) -> Expenditure:
        expenditure = await self._expenditure(expenditure_id)
        authorize(
            caller.principal, COMMUNITY_APPROVERS | STREET_APPROVERS, expenditure.community_code
        )
        return await self._update(
            self.expenditures,
            expenditure,
            lambda e: e.reject(caller.principal.subject, reason),
            caller,
        )

    async def request_for_case(
        self, request: CaseRequest, correlation_id: str | None
    ) -> Expenditure:
        """A case's request for money (cases' ``CaseFundingRequested``), as an expenditure
        under the id the case chose, so a redelivered request opens nothing twice. When
        the fund or the payee does not exist it is refused at once, for the case to see."""
        found = await self.expenditures.find(request.expenditure_id)
        if found is not None:
            return found
        fund = special_fund_of(request.community_code)
        expenditure = Expenditure.request(
            request.expenditure_id,
            request.community_code,
            fund,
            request.payee_account,
            request.amount_fen,
            request.purpose,
            request.evidence,
            request.case_id,
            request.requester,
            self.street_threshold_fen,
            by_case_request=True,
        )
        missing = [a for a in (fund, request.payee_account) if await self.accounts.find(a) is None]
        if missing:
            expenditure.reject(SAGA.subject, f"account {missing[0]} does not exist")
        try:
            await self.expenditures.save(expenditure, Caller(SAGA, correlation_id).metadata)
        except ConcurrencyError:
            return await self.expenditures.get(request.expenditure_id)  # saved meanwhile
        return expenditure

    async def settle_for_case(self, expenditure_id: str, correlation_id: str | None) -> Expenditure:
        """Once a case's expenditure has every approval, hold its money and pay it; when
        the fund cannot cover it or the payment is refused, void it with the reason. Each
        step finds what an earlier, interrupted run did, so running it again is safe."""
        expenditure = await self._expenditure(expenditure_id)
        if not expenditure.by_case_request:
            return expenditure  # not opened by the saga: finance officers reserve and pay
        if expenditure.status not in (ExpenditureStatus.APPROVED, ExpenditureStatus.RESERVED):
            return expenditure  # waiting for approval, or settled already
        caller = Caller(SAGA, correlation_id)
        try:
            await self._hold(expenditure, caller)
            await self._pay(expenditure, caller)
        except RuleViolation as refused:
            return await self.void(caller, expenditure_id, f"not paid: {refused}")
        now = self.clock.now()

        def settle(e: Expenditure) -> None:
            if e.status is ExpenditureStatus.APPROVED:
                e.mark_reserved()
            e.mark_disbursed(now)

        return await self._update(self.expenditures, expenditure, settle, caller)

    async def assign_task(
        self,
        caller: Caller,
        idempotency_key: str,
        department_account: str,
        community_code: str,
        title: str,
        amount_fen: int,
    ) -> Task:
        """A department's task for a community, active only once its money has moved into
        the community's task account; a retry with the same key completes or finds it."""
        if parse_unit_code(community_code)[0] is not UnitKind.COMMUNITY:
            raise InvalidInput(f"{community_code} is not a community's code")
        department = await self._account(department_account, RuleViolation)
        if department.kind is not AccountKind.SOURCE:
            raise RuleViolation(f"{department_account} is not a department's budget")
        authorize(caller.principal, FINANCE, community_code)
        task_id = task_id_for(idempotency_key)
        task = await self.tasks.find(task_id)
        if task is None:
            task = Task.assign(task_id, department_account, community_code, title, amount_fen)
            try:
                await self.tasks.save(task, caller.metadata)
            except ConcurrencyError:
                task = await self.tasks.get(task_id)
        funding = account_id(AccountKind.FUND, community_code, "tasks")
        await self._open(funding, AccountKind.FUND, community_code, "事随费转任务经费", caller)
        try:
            await self._move_id(
                task.transfer_id,
                department_account,
                funding,
                task.amount_fen,
                f"任务：{task.title}",
                caller,
            )
        except RuleViolation as exc:
            reason = str(exc)
            await self.tasks.update(task_id, lambda t: t.cancel(reason), caller.metadata)
            raise
        return await self.tasks.update(task_id, lambda t: t.funded(), caller.metadata)

    async def close_year(self, caller: Caller, account: str, year: int) -> Account:
        found = await self._account(account, NotFound)
        authorize(caller.principal, FINANCE, found.owner_code)
        async with self.locks.hold(account):
            return await self.accounts.update(
                account, lambda a: a.close_year(year), caller.metadata
            )

    async def statement(
        self, account: str, as_of: datetime | None
    ) -> tuple[Account, list[RecordedEvent]]:
        """The account, and its booked entries, now or as of a past moment."""
        found = await self._account(account, NotFound)
        if as_of is not None:
            found = await self.accounts.get_as_of(account, moment=as_of)
        entries = [
            e
            for e in await self.store.read_stream(found.stream_id)
            if e.type in ("Debited", "Credited") and (as_of is None or e.occurred_at <= as_of)
        ]
        return found, entries

    async def get_task(self, task_id: str) -> Task:
        found = await self.tasks.find(task_id)
        if found is None:
            raise NotFound(f"task {task_id} does not exist")
        return found

    async def get_expenditure(self, expenditure_id: str) -> Expenditure:
        return await self._expenditure(expenditure_id)

    # -- helpers ----------------------------------------------------------------------------

    async def _hold(self, expenditure: Expenditure, caller: Caller) -> None:
        """Reserve the expenditure's money on its fund (once: the transfer id is the key)."""
        async with self.locks.hold(expenditure.fund_account):
            await self.accounts.update(
                expenditure.fund_account,
                lambda f: f.reserve(
                    expenditure.transfer_id, expenditure.amount_fen, expenditure.payee_account
                ),
                caller.metadata,
            )

    async def _pay(self, expenditure: Expenditure, caller: Caller) -> None:
        """Pay what the expenditure's hold holds; refused once a void has released it
        (checked under the fund's lock, which a void takes too)."""
        await self._move_id(
            expenditure.transfer_id,
            expenditure.fund_account,
            expenditure.payee_account,
            expenditure.amount_fen,
            f"支出 {expenditure.id}",
            caller,
            held_only=True,
        )

    async def _move(
        self,
        idempotency_key: str,
        source: str,
        target: str,
        amount_fen: int,
        memo: str,
        caller: Caller,
    ) -> str:
        transfer_id = transfer_id_for(idempotency_key)
        await self._move_id(transfer_id, source, target, amount_fen, memo, caller)
        return transfer_id

    async def _move_id(
        self,
        transfer_id: str,
        source: str,
        target: str,
        amount_fen: int,
        memo: str,
        caller: Caller,
        *,
        held_only: bool = False,
    ) -> tuple[Account, Account]:
        """Debit, then credit, under one transfer id: a retry completes a half-done move.
        Each account is read once, under its lock, and the receiving side is checked
        before the paying side is debited."""
        check_amount(amount_fen)
        if source == target:
            raise InvalidInput("a transfer moves money between two different accounts")
        now = self.clock.now()
        async with self.locks.hold(source, target):
            paying = await self._account(source, RuleViolation)
            receiving = await self._account(target, RuleViolation)
            receiving.check_can_credit(now)
            paying = await self.accounts.update(
                source,
                lambda a: a.debit(transfer_id, amount_fen, target, now, memo, held_only=held_only),
                caller.metadata,
                loaded=paying,
            )
            receiving = await self.accounts.update(
                target,
                lambda a: a.credit(transfer_id, amount_fen, source, now, memo),
                caller.metadata,
                loaded=receiving,
            )
        return paying, receiving

    def _approval_level(self, principal: Principal, expenditure: Expenditure) -> ApprovalLevel:
        missing = [
            level
            for level in (ApprovalLevel.COMMUNITY, ApprovalLevel.STREET)
            if level in expenditure.levels_needed and level not in expenditure.approvals
        ]
        if not missing:
            raise RuleViolation("the expenditure has every approval it needs")
        if ApprovalLevel.COMMUNITY in missing and principal.roles & COMMUNITY_APPROVERS:
            return ApprovalLevel.COMMUNITY
        return ApprovalLevel.STREET if ApprovalLevel.STREET in missing else missing[0]

    async def _open(
        self, account: str, kind: AccountKind, owner_code: str, name: str, caller: Caller
    ) -> Account:
        try:
            opened = Account.open(account, kind, owner_code, name)
            await self.accounts.save(opened, caller.metadata)
            return opened
        except ConcurrencyError:
            return await self.accounts.get(account)  # opened already

    async def _finance(self, caller: Caller, expenditure_id: str) -> Expenditure:
        expenditure = await self._expenditure(expenditure_id)
        authorize(caller.principal, FINANCE | {R.SERVICE}, expenditure.community_code)
        return expenditure

    async def _account(self, account: str, missing: type[Exception]) -> Account:
        try:
            return await self.accounts.get(account)
        except AggregateNotFound:
            raise missing(f"account {account} does not exist") from None

    async def _expenditure(self, expenditure_id: str) -> Expenditure:
        try:
            return await self.expenditures.get(expenditure_id)
        except AggregateNotFound:
            raise NotFound(f"expenditure {expenditure_id} does not exist") from None

    async def _update(
        self, repository: Repository[A], aggregate: A, change: Callable[[A], object], caller: Caller
    ) -> A:
        def apply(fresh: A) -> None:
            change(fresh)

        return await repository.update(aggregate.id, apply, caller.metadata, loaded=aggregate)
