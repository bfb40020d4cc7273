"""funds commands: check every input, authorize on every unit a command touches, then
move money only through double entries bound to their keys.

Every account id a caller names is parsed (``kind:owner:key``, each part checked)
before anything else, so a malformed one is INVALID_ARGUMENT and never reaches the
store. A command touching several units (a transfer's two accounts, a budget and the
community it pays) needs the caller's scope over each of them. Keys a caller sends
bind the whole request they first named: sent again with anything different, they
are refused with :class:`AlreadyExists` and nothing is stored.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import datetime

from civitas.chassis.auth import Caller, Principal, Role, authorize, authorize_all
from civitas.chassis.requests import id_for
from civitas.errors import AlreadyExists, InvalidInput, NotAllowed, RuleViolation
from civitas.eventkit import (
    Clock,
    EventStore,
    KeyedLocks,
    RecordedEvent,
    Repository,
)
from civitas.eventkit.ids import new_uuid
from civitas.geography import UnitKind, checked_community, parse_unit_code, street_of
from civitas.validation import required_text

from .domain.accounts import (
    YUAN,
    Account,
    AccountKind,
    check_amount,
    client_transfer_id_for,
    transfer_id_for,
)
from .domain.expenditures import ApprovalLevel, Expenditure, ExpenditureStatus
from .domain.tasks import Task, task_id_for
from .domain.transfers import TransferRecord

R = Role
FINANCE = {R.DISTRICT_ADMIN, R.FINANCE_OFFICER}
REQUESTERS = {
    R.DISTRICT_ADMIN,
    R.STREET_STAFF,
    R.COMMUNITY_STAFF,
    R.PARTY_SECRETARY,
    R.FINANCE_OFFICER,
}
COMMUNITY_APPROVERS = {R.DISTRICT_ADMIN, R.COMMUNITY_STAFF, R.PARTY_SECRETARY}
STREET_APPROVERS = {R.DISTRICT_ADMIN, R.STREET_STAFF}
YEARLY_ALLOCATION_FEN = 200_000 * YUAN
MAX_ALLOCATION_FEN = 2 * YEARLY_ALLOCATION_FEN
"""The most a district admin may allocate a community in one year (twice the standard)."""
FIRST_YEAR, LAST_YEAR = 2000, 9999
MAX_ACCOUNT_ID_CHARS = 100
PAYABLE = (AccountKind.PAYEE, AccountKind.EXPENSE)
SAGA = Principal("funds", frozenset(), ("QH",))
"""Who funds' own process managers act as (the saga with cases). It holds no role, so no
role set admits it: the saga's paths call the internal steps, never the commands that
authorize callers, and no token can pass for it."""
_KEY = re.compile(r"[a-z][a-z0-9_.-]{0,40}")
DISTRICT_BUDGET = "source:QH:budget"


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
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidInput(f"account key {key!r:.60} is not a short lower-case ASCII key")
    return f"{kind.value}:{owner_code}:{key}"


def parse_account_id(value: str, field: str = "account_id") -> tuple[AccountKind, str, str]:
    """The kind, owner and key of an account id a caller sent, each part checked: an
    empty, over-long or malformed id (a NUL, a quote, a path) is bad input."""
    if not value:
        raise InvalidInput(f"{field} is required")
    if len(value) > MAX_ACCOUNT_ID_CHARS:
        raise InvalidInput(f"{field} is longer than {MAX_ACCOUNT_ID_CHARS} characters")
    parts = value.split(":")
    kinds = sorted(kind.value for kind in AccountKind)
    if len(parts) == 3 and parts[0] in kinds:
        kind, owner, key = AccountKind(parts[0]), parts[1], parts[2]
        with contextlib.suppress(InvalidInput):  # a bad owner or key: said below, whole
            account_id(kind, owner, key)
            return kind, owner, key
    raise InvalidInput(
        f"{field} {value!r:.60} is not kind:owner:key (a kind of {kinds}, "
        "a unit code and a short lower-case key, e.g. fund:QH-01-01:special)"
    )


def check_route(principal: Principal, paying: Account, receiving: Account) -> None:
    """Which movements a caller's Transfer may make. Payees and expense accounts are
    paid only by an expenditure, which people other than its requester approve: a
    transfer never credits one (else one finance officer could pay anyone, or move
    approved money on). Money enters the funds from a budget (a source) by policy:
    the yearly allocation, task funding, or a district admin's transfer; a finance
    officer moves money between funds, returns it to a budget, and books refunds from
    payees and expense accounts into funds."""
    if receiving.kind in PAYABLE:
        raise RuleViolation(
            f"{receiving.id} is paid only through an expenditure, which people other than "
            "its requester approve (RequestExpenditure), never by a transfer"
        )
    if paying.kind is AccountKind.SOURCE and R.DISTRICT_ADMIN not in principal.roles:
        raise NotAllowed(
            f"{principal.subject} may not move money out of a budget ({paying.id}): a "
            "district admin does, or the yearly allocation and task funding"
        )


def owner_of(account: str, field: str = "account_id") -> str:
    """The unit an account id names as its owner (the id checked first)."""
    return parse_account_id(account, field)[1]


def special_fund_of(community_code: str) -> str:
    return account_id(AccountKind.FUND, community_code, "special")


def allocation_key(year: int, community_code: str) -> str:
    """The system's key of a community's yearly allocation (its transfer id derives from
    it, in the system's namespace: no caller's key can name it)."""
    return f"allocation:{year}:{community_code}"


def _year(year: int) -> int:
    if isinstance(year, bool) or not isinstance(year, int) or not FIRST_YEAR <= year <= LAST_YEAR:
        raise InvalidInput(f"year {year!r} is out of range ({FIRST_YEAR}-{LAST_YEAR})")
    return year


def _memo(memo: str) -> str:
    memo = (memo or "").strip()
    if len(memo) > 500:
        raise InvalidInput("memo is longer than 500 characters")
    return memo


class Funds:
    """The funds application service."""

    def __init__(self, store: EventStore, clock: Clock, street_threshold_fen: int) -> None:
        self.accounts = Repository(store, Account)
        self.expenditures = Repository(store, Expenditure)
        self.tasks = Repository(store, Task)
        self.transfers = Repository(store, TransferRecord)
        self.store = store
        self.clock = clock
        self.street_threshold_fen = street_threshold_fen
        self.locks = KeyedLocks()

    async def open_account(
        self, caller: Caller, kind: AccountKind, owner_code: str, key: str, name: str
    ) -> Account:
        """Open an account, or find it when it is open already under the same name. A
        source (a budget, where money enters the ledger) belongs to the district, so
        only finance with the district in scope opens one."""
        account = account_id(kind, owner_code, key)
        name = required_text("name", name)
        if kind is AccountKind.SOURCE and parse_unit_code(owner_code)[0] is not UnitKind.DISTRICT:
            raise InvalidInput(
                f"a source account (a budget) belongs to the district, not to {owner_code}"
            )
        authorize(caller.principal, FINANCE, owner_code)
        opened = await self._open(account, kind, owner_code, name, caller)
        if opened.name != name:
            raise AlreadyExists(
                f"account {account} is open already, named {opened.name!r}; nothing was done"
            )
        return opened

    async def allocate_year(
        self, caller: Caller, community_code: str, year: int, amount_fen: int
    ) -> Account:
        """A community's special fund for the open fiscal year, from the district budget;
        once per community and year (its key is the system's own)."""
        checked_community(community_code)
        _year(year)
        authorize_all(caller.principal, FINANCE, owner_of(DISTRICT_BUDGET), community_code)
        amount = self._allocation(caller.principal, amount_fen)
        now = self.clock.now()
        if year != now.year:
            raise RuleViolation(f"only the open fiscal year, {now.year}, is allocated; not {year}")
        fund = special_fund_of(community_code)
        transfer_id = transfer_id_for(allocation_key(year, community_code))
        memo = f"{year}年为民服务专项资金"
        budget_account, fund_account = (
            await self.accounts.find(DISTRICT_BUDGET),
            await self.accounts.find(fund),
        )
        try:  # refused before anything is stored, opening included
            if budget_account is not None:
                budget_account.check_debit(transfer_id, amount, fund, now, memo)
            if fund_account is not None:
                fund_account.check_credit(transfer_id, amount, DISTRICT_BUDGET, now, memo)
        except AlreadyExists:
            raise AlreadyExists(
                f"the {year} allocation of {community_code} is booked already with another "
                "amount; nothing was done"
            ) from None
        await self._open(DISTRICT_BUDGET, AccountKind.SOURCE, "QH", "区财政预算", caller)
        await self._open(fund, AccountKind.FUND, community_code, "为民服务专项资金", caller)
        await self._move_id(transfer_id, DISTRICT_BUDGET, fund, amount, memo, caller)
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
        """Move money between two accounts the caller has in scope. The key binds the
        transfer: the same key again with the same request is a retry; with anything
        else it is refused and nothing moves. See :func:`check_route` for which
        movements a transfer may make at all."""
        transfer_id = client_transfer_id_for(idempotency_key)
        owners = owner_of(from_account, "from_account"), owner_of(to_account, "to_account")
        check_amount(amount_fen)
        memo = _memo(memo)
        authorize_all(caller.principal, FINANCE, *owners)
        paying = await self.accounts.load(from_account, "account")
        receiving = await self.accounts.load(to_account, "account")
        check_route(caller.principal, paying, receiving)
        try:
            paying, receiving = await self._move_id(
                transfer_id, from_account, to_account, amount_fen, memo, caller
            )
        except AlreadyExists as conflict:
            raise AlreadyExists(
                f"idempotency_key {idempotency_key!r} was used for another transfer ({conflict})"
            ) from None
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
        request_id: str | None = None,
    ) -> Expenditure:
        """Ask for money from a community's special fund, to a payee or expense account.
        With a request id, the expenditure's id derives from it: a retry finds the
        first one, and the id sent with another request is refused."""
        checked_community(community_code)
        parse_account_id(payee, "payee_account")
        authorize(caller.principal, REQUESTERS, community_code)
        fund = special_fund_of(community_code)
        await self.accounts.load(fund, "account", RuleViolation)
        payee_account = await self.accounts.load(payee, "account")
        if payee_account.kind not in PAYABLE:
            raise RuleViolation(f"{payee} is a {payee_account.kind} account, not a payee")
        expenditure = Expenditure.request(
            id_for("expenditure", request_id) or str(new_uuid()),
            community_code,
            fund,
            payee,
            amount_fen,
            purpose,
            evidence,
            case_id,
            caller.principal.subject,
            self.street_threshold_fen,
        )
        if request_id is None:
            await self.expenditures.save(expenditure, caller.metadata)
            return expenditure
        return await self._save_once(expenditure, request_id, caller)

    async def approve(self, caller: Caller, expenditure_id: str) -> Expenditure:
        expenditure = await self.expenditures.load(expenditure_id, "expenditure")
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
        return await self.expenditures.update(
            expenditure.id,
            lambda e: e.approve(caller.principal.subject, level),
            caller.metadata,
            loaded=expenditure,
        )

    async def reserve(self, caller: Caller, expenditure_id: str) -> Expenditure:
        """Hold the money on the fund, then mark the expenditure reserved; a retry after
        a crash between the two finds the hold and completes."""
        expenditure = await self._finance(caller, expenditure_id)
        if expenditure.status is not ExpenditureStatus.APPROVED:
            raise RuleViolation(
                f"cannot reserve funds for an expenditure that is {expenditure.status}"
            )
        expenditure = await self._hold(expenditure.id, caller)
        return await self.expenditures.update(
            expenditure.id, lambda e: e.mark_reserved(), caller.metadata, loaded=expenditure
        )

    async def disburse(self, caller: Caller, expenditure_id: str) -> Expenditure:
        expenditure = await self._finance(caller, expenditure_id)
        if expenditure.status is not ExpenditureStatus.RESERVED:
            raise RuleViolation(f"cannot disburse an expenditure that is {expenditure.status}")
        await self._pay(expenditure, caller)
        now = self.clock.now()
        return await self.expenditures.update(
            expenditure.id, lambda e: e.mark_disbursed(now), caller.metadata, loaded=expenditure
        )

    async def void(self, caller: Caller, expenditure_id: str, reason: str) -> Expenditure:
        """Void it and release its hold; refused once its money has moved (a payment is
        corrected by a reversing transfer, never unsaid). Asked again for a voided one,
        it finishes a release a crash interrupted."""
        expenditure = await self._finance(caller, expenditure_id)
        return await self._void(expenditure, required_text("reason", reason, 500), caller)

    async def reject(self, caller: Caller, expenditure_id: str, reason: str) -> Expenditure:
        expenditure = await self.expenditures.load(expenditure_id, "expenditure")
        authorize(
            caller.principal, COMMUNITY_APPROVERS | STREET_APPROVERS, expenditure.community_code
        )
        return await self.expenditures.update(
            expenditure.id,
            lambda e: e.reject(caller.principal.subject, reason),
            caller.metadata,
            loaded=expenditure,
        )

    async def request_for_case(
        self, request: CaseRequest, correlation_id: str | None
    ) -> Expenditure:
        """A case's request for money (cases' ``CaseFundingRequested``), as an expenditure
        under the id the case chose, so a redelivered request opens nothing twice. When
        the fund or the payee does not exist, or the payee is no payee, it is refused at
        once, for the case to see."""
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
        refusal = await self._refusal_of_case_request(fund, request.payee_account)
        if refusal:
            expenditure.reject(SAGA.subject, refusal)
        metadata = Caller(SAGA, correlation_id).metadata
        return await self.expenditures.create_or_fetch(expenditure, metadata)  # or saved meanwhile

    async def settle_for_case(self, expenditure_id: str, correlation_id: str | None) -> Expenditure:
        """Once a case's expenditure has every approval, hold its money and pay it; when
        the fund cannot cover it or the payment is refused, void it with the reason. Each
        step finds what an earlier, interrupted run did, so running it again is safe."""
        expenditure = await self.expenditures.load(expenditure_id, "expenditure")
        if not expenditure.by_case_request:
            return expenditure  # not opened by the saga: finance officers reserve and pay
        if expenditure.status not in (ExpenditureStatus.APPROVED, ExpenditureStatus.RESERVED):
            return expenditure  # waiting for approval, or settled already
        caller = Caller(SAGA, correlation_id)
        try:
            expenditure = await self._hold(expenditure_id, caller)
            await self._pay(expenditure, caller)
        except RuleViolation as refused:
            fresh = await self.expenditures.load(expenditure_id, "expenditure")
            return await self._void(fresh, f"not paid: {refused}", caller)
        now = self.clock.now()

        def settle(e: Expenditure) -> None:
            if e.status is ExpenditureStatus.APPROVED:
                e.mark_reserved()
            e.mark_disbursed(now)

        return await self.expenditures.update(
            expenditure.id, settle, caller.metadata, loaded=expenditure
        )

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
        the community's task account; a retry with the same key and request completes or
        finds it, the same key with another request is refused. An assignment whose money
        cannot move is refused before anything is stored."""
        checked_community(community_code)
        department_owner = owner_of(department_account, "department_account")
        authorize_all(caller.principal, FINANCE, department_owner, community_code)
        department = await self.accounts.load(department_account, "account")
        if department.kind is not AccountKind.SOURCE:
            raise RuleViolation(f"{department_account} is not a department's budget")
        task_id = task_id_for(idempotency_key)
        wanted = Task.assign(task_id, department_account, community_code, title, amount_fen)
        funding = account_id(AccountKind.FUND, community_code, "tasks")
        task = await self._task_once(wanted, idempotency_key, department, funding, caller)
        await self._open(funding, AccountKind.FUND, community_code, "事随费转任务经费", caller)
        try:
            await self._move_id(
                task.transfer_id,
                department_account,
                funding,
                task.amount_fen,
                _task_memo(task),
                caller,
            )
        except RuleViolation as exc:
            reason = str(exc)
            await self.tasks.update(task_id, lambda t: t.cancel(reason), caller.metadata)
            raise
        return await self.tasks.update(task_id, lambda t: t.funded(), caller.metadata)

    async def close_year(self, caller: Caller, account: str, year: int) -> Account:
        """Close an account's fiscal year (one that has begun): it takes no more entries
        dated in that year."""
        authorize(caller.principal, FINANCE, owner_of(account))
        if _year(year) > self.clock.now().year:
            raise RuleViolation(f"{year} has not begun: only a year that has begun is closed")
        await self.accounts.load(account, "account")
        async with self.locks.hold(account):
            return await self.accounts.update(
                account, lambda a: a.close_year(year), caller.metadata
            )

    async def statement(
        self, account: str, as_of: datetime | None
    ) -> tuple[Account, list[RecordedEvent]]:
        """The account, and its booked entries, now or as of a past moment."""
        parse_account_id(account)
        found = await self.accounts.load(account, "account")
        if as_of is not None:
            found = await self.accounts.get_as_of(account, moment=as_of)
        entries = [
            e
            for e in await self.store.read_stream(found.stream_id)
            if e.type in ("Debited", "Credited") and (as_of is None or e.occurred_at <= as_of)
        ]
        return found, entries

    async def get_task(self, task_id: str) -> Task:
        return await self.tasks.load(task_id, "task")

    async def get_expenditure(self, expenditure_id: str) -> Expenditure:
        return await self.expenditures.load(expenditure_id, "expenditure")

    # -- helpers ----------------------------------------------------------------------------

    def _allocation(self, principal: Principal, amount_fen: int) -> int:
        """The amount of a yearly allocation: the standard 200,000 yuan (0 asks for it),
        or another amount up to twice that, which only a district admin sets."""
        if amount_fen in (0, YEARLY_ALLOCATION_FEN):
            return YEARLY_ALLOCATION_FEN
        check_amount(amount_fen)
        if R.DISTRICT_ADMIN not in principal.roles:
            raise NotAllowed(
                f"{principal.subject} may allocate only the standard "
                f"{YEARLY_ALLOCATION_FEN // YUAN:,} yuan (a district admin sets another amount)"
            )
        if amount_fen > MAX_ALLOCATION_FEN:
            raise InvalidInput(
                f"an allocation is at most {MAX_ALLOCATION_FEN // YUAN:,} yuan, "
                f"not {amount_fen / YUAN:,.2f}"
            )
        return amount_fen

    async def _save_once(
        self, expenditure: Expenditure, request_id: str, caller: Caller
    ) -> Expenditure:
        """Save an expenditure whose id derives from a request id: when it exists already
        (a retry after a lost reply or a concurrent copy) return it if it is the same
        request, refuse it otherwise."""
        found = await self.expenditures.find(expenditure.id)
        stored = found or await self.expenditures.create_or_fetch(expenditure, caller.metadata)
        if stored is not expenditure and not stored.is_same_request(expenditure):
            raise AlreadyExists(
                f"request_id {request_id} was used for another expenditure; nothing was done"
            )
        return stored

    async def _task_once(
        self, wanted: Task, idempotency_key: str, department: Account, funding: str, caller: Caller
    ) -> Task:
        """The task under its key: the one recorded already when the request is the same,
        else ``wanted``, saved once its money is known to be able to move."""
        task = await self.tasks.find(wanted.id)
        if task is None:
            now = self.clock.now()
            memo = _task_memo(wanted)
            department.check_debit(wanted.transfer_id, wanted.amount_fen, funding, now, memo)
            receiving = await self.accounts.find(funding)
            if receiving is not None:
                receiving.check_credit(
                    wanted.transfer_id, wanted.amount_fen, department.id, now, memo
                )
            task = await self.tasks.create_or_fetch(wanted, caller.metadata)
            if task is wanted:
                return wanted
        if not task.is_same_assignment(wanted):
            raise AlreadyExists(
                f"idempotency_key {idempotency_key!r} was used for another task; nothing was done"
            )
        task.check_not_cancelled()
        return task

    async def _refusal_of_case_request(self, fund: str, payee: str) -> str | None:
        for account in (fund, payee):
            if await self.accounts.find(account) is None:
                return f"account {account} does not exist"
        payee_account = await self.accounts.get(payee)
        if payee_account.kind not in PAYABLE:
            return f"{payee} is a {payee_account.kind} account, not a payee"
        return None

    async def _hold(self, expenditure_id: str, caller: Caller) -> Expenditure:
        """Reserve an approved expenditure's money on its fund (once: the transfer id is the
        key). Its status is read under the fund's lock, which a void takes too, so a
        voided expenditure never gets a hold."""
        expenditure = await self.expenditures.load(expenditure_id, "expenditure")
        async with self.locks.hold(expenditure.fund_account):
            expenditure = await self.expenditures.load(expenditure_id, "expenditure")
            if expenditure.status not in (ExpenditureStatus.APPROVED, ExpenditureStatus.RESERVED):
                raise RuleViolation(
                    f"cannot hold money for an expenditure that is {expenditure.status}"
                )
            await self.accounts.update(
                expenditure.fund_account,
                lambda f: f.reserve(
                    expenditure.transfer_id, expenditure.amount_fen, expenditure.payee_account
                ),
                caller.metadata,
            )
        return expenditure

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

    async def _void(self, expenditure: Expenditure, reason: str, caller: Caller) -> Expenditure:
        """Void and release under the fund's lock, which a payment takes too (and a
        payment pays only what is still held)."""
        async with self.locks.hold(expenditure.fund_account):
            fund = await self.accounts.load(expenditure.fund_account, "account", RuleViolation)
            if fund.has_paid(expenditure.transfer_id):
                raise RuleViolation(f"expenditure {expenditure.id} is paid already")
            if expenditure.status is not ExpenditureStatus.VOIDED:  # else: finish its release
                expenditure = await self.expenditures.update(
                    expenditure.id, lambda e: e.void(reason), caller.metadata, loaded=expenditure
                )
            await self.accounts.update(
                expenditure.fund_account,
                lambda f: f.release(expenditure.transfer_id, reason),
                caller.metadata,
                loaded=fund,
            )
        return expenditure

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
        The transfer's own record binds the id to the whole movement and is written
        before the debit; each account is read once, under its lock, and both sides are
        checked (funds available, years open, the transfer id free or booked the same)
        before anything is written, so a refusal stores nothing."""
        check_amount(amount_fen)
        if source == target:
            raise InvalidInput("a transfer moves money between two different accounts")
        now = self.clock.now()
        async with self.locks.hold(source, target):
            record = await self.transfers.find(transfer_id)
            if record is not None:
                record.check_same(source, target, amount_fen, memo)
            paying = await self.accounts.load(source, "account", RuleViolation)
            receiving = await self.accounts.load(target, "account", RuleViolation)
            paying.check_debit(transfer_id, amount_fen, target, now, memo, held_only)
            receiving.check_credit(transfer_id, amount_fen, source, now, memo)
            if record is None:
                await self._bind(transfer_id, source, target, amount_fen, memo, caller)
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

    async def _bind(
        self, transfer_id: str, source: str, target: str, amount_fen: int, memo: str, caller: Caller
    ) -> None:
        """Record what the transfer id moves, before either side is booked: after a crash
        between the two, no other movement can take the id (funds.domain.transfers)."""
        intended = TransferRecord.intend(transfer_id, source, target, amount_fen, memo)
        bound = await self.transfers.create_or_fetch(intended, caller.metadata)
        if bound is not intended:  # bound meanwhile, by another process
            bound.check_same(source, target, amount_fen, memo)

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
        opened = Account.open(account, kind, owner_code, name)
        return await self.accounts.create_or_fetch(opened, caller.metadata)  # or opened already

    async def _finance(self, caller: Caller, expenditure_id: str) -> Expenditure:
        expenditure = await self.expenditures.load(expenditure_id, "expenditure")
        authorize(caller.principal, FINANCE, expenditure.community_code)
        return expenditure


def _task_memo(task: Task) -> str:
    return f"任务：{task.title}"
