"""funds' queries (cosmicpython's ``views``): an account's statement (its booked entries,
signed as ``postings`` says, now or as of a past moment), the trial balance the ledger
read model answers, an expenditure and a task. Funds keep no personal data: nothing here
is hidden."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from . import postings
from .application import Funds
from .domain.accounts import Account
from .domain.expenditures import Expenditure
from .domain.tasks import Task
from .ledger import AccountBalance, LedgerQueries


@dataclass(frozen=True, slots=True)
class Entry:
    """One booked entry of a statement: credits count up, debits down."""

    transfer_id: str
    amount_fen: int
    counterpart_account: str
    booked_at: datetime
    memo: str


@dataclass(frozen=True, slots=True)
class TrialBalance:
    """Every account's balance, by account id, and their sum (zero in a sound ledger)."""

    accounts: list[AccountBalance]
    total_fen: int


class FundsViews:
    """Reads for funds' edge; the trial balance catches up with the ledger first, so it
    holds every transfer booked before the call."""

    def __init__(
        self, app: Funds, ledger: LedgerQueries, ledger_ready: Callable[[], Awaitable[None]]
    ) -> None:
        self.app = app
        self.ledger = ledger
        self.ledger_ready = ledger_ready

    async def account(self, account_id: str) -> Account:
        account, _ = await self.app.statement(account_id, None)
        return account

    async def statement(
        self, account_id: str, as_of: datetime | None
    ) -> tuple[Account, list[Entry]]:
        """The account, and its booked entries, now or as of a past moment."""
        account, booked = await self.app.statement(account_id, as_of)
        entries = []
        for e in booked:
            posted = postings.posting(e.type, e.data)
            entries.append(
                Entry(
                    transfer_id=posted.transfer_id,
                    amount_fen=posted.amount_fen,
                    counterpart_account=posted.counterpart,
                    booked_at=e.occurred_at,
                    memo=posted.memo,
                )
            )
        return account, entries

    async def trial_balance(self) -> TrialBalance:
        await self.ledger_ready()
        accounts = await self.ledger.trial_balance()
        return TrialBalance(accounts, sum(a.balance_fen for a in accounts))

    async def expenditure(self, expenditure_id: str) -> Expenditure:
        return await self.app.get_expenditure(expenditure_id)

    async def task(self, task_id: str) -> Task:
        return await self.app.get_task(task_id)
