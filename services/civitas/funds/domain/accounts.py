"""Accounts of a double-entry ledger, in integer fen.

A transfer is a debit on one account and a credit on another under one transfer
id; both entries are idempotent by that id, so a retried request completes a
half-done transfer and never pays twice. Sources (the district budget, a
department's budget) bring money in and may run negative; a fund account (a
community's special fund, the party work subsidy, task funding) never goes below
zero, counting its pending reservations.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from civitas.errors import InvalidInput, RuleViolation
from civitas.eventkit import Aggregate, DomainEvent, applies, natural_id

YUAN = 100  # fen per yuan


class AccountKind(enum.StrEnum):
    SOURCE = "source"  # district or department budget: money enters the ledger here
    FUND = "fund"  # never below zero, counting reservations
    PAYEE = "payee"  # social organizations, vendors
    EXPENSE = "expense"


def transfer_id_for(idempotency_key: str) -> str:
    """One transfer per idempotency key: a retried request finds the same transfer."""
    if not (idempotency_key or "").strip():
        raise InvalidInput("idempotency_key is required")
    return str(natural_id("transfer", idempotency_key.strip()))


def check_amount(amount_fen: int) -> int:
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
        raise InvalidInput(f"an amount is a positive whole number of fen, not {amount_fen!r}")
    return amount_fen


class LedgerAccountOpened(DomainEvent):
    kind: AccountKind
    owner_code: str
    name: str


class FundsReserved(DomainEvent):
    transfer_id: str
    amount_fen: int
    to_account: str


class ReservationReleased(DomainEvent):
    transfer_id: str
    reason: str


class Debited(DomainEvent):
    transfer_id: str
    amount_fen: int
    to_account: str
    booked_at: datetime
    memo: str


class Credited(DomainEvent):
    transfer_id: str
    amount_fen: int
    from_account: str
    booked_at: datetime
    memo: str


class YearClosed(DomainEvent):
    year: int
    closing_balance_fen: int


class Account(Aggregate):
    category = "account"
    snapshot_every = 500

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.kind = AccountKind.FUND
        self.owner_code = ""
        self.name = ""
        self.balance_fen = 0
        self.reserved: dict[str, int] = {}
        self.entries: set[str] = set()  # transfer ids booked here, debits and credits
        self.closed_years: dict[int, int] = {}

    @classmethod
    def open(cls, account_id: str, kind: AccountKind, owner_code: str, name: str) -> Account:
        account = cls(account_id)
        account._record(LedgerAccountOpened(kind=kind, owner_code=owner_code, name=name))
        return account

    @property
    def available_fen(self) -> int:
        """What may still be spent: the balance less pending reservations."""
        return self.balance_fen - sum(self.reserved.values())

    def reserve(self, transfer_id: str, amount_fen: int, to_account: str) -> None:
        if transfer_id in self.reserved or transfer_id in self.entries:
            return  # reserved or paid already: a retry
        self._check_covers(check_amount(amount_fen))
        self._record(
            FundsReserved(transfer_id=transfer_id, amount_fen=amount_fen, to_account=to_account)
        )

    def release(self, transfer_id: str, reason: str) -> None:
        if transfer_id not in self.reserved:
            return  # released already, or never reserved
        self._record(ReservationReleased(transfer_id=transfer_id, reason=reason))

    def debit(
        self,
        transfer_id: str,
        amount_fen: int,
        to_account: str,
        now: datetime,
        memo: str = "",
        *,
        held_only: bool = False,
    ) -> None:
        """Book the paying side; a reservation under the same id is settled by it.
        ``held_only``: pay only what a reservation holds (an expenditure's payment:
        once its hold is released, by a void, it is not paid)."""
        if transfer_id in self.entries:
            return
        check_amount(amount_fen)
        self._check_year_open(now)
        held = self.reserved.get(transfer_id)
        if held_only and held is None:
            raise RuleViolation(f"nothing is held under {transfer_id}: it was released")
        if held is not None and held != amount_fen:
            raise RuleViolation(f"transfer {transfer_id} reserved {held} fen, not {amount_fen}")
        if held is None:
            self._check_covers(amount_fen)
        self._record(
            Debited(
                transfer_id=transfer_id,
                amount_fen=amount_fen,
                to_account=to_account,
                booked_at=now,
                memo=memo,
            )
        )

    def credit(
        self, transfer_id: str, amount_fen: int, from_account: str, now: datetime, memo: str = ""
    ) -> None:
        """Book the receiving side (once per transfer)."""
        if transfer_id in self.entries:
            return
        self._check_year_open(now)
        self._record(
            Credited(
                transfer_id=transfer_id,
                amount_fen=check_amount(amount_fen),
                from_account=from_account,
                booked_at=now,
                memo=memo,
            )
        )

    def check_can_credit(self, now: datetime) -> None:
        """Raise unless this account may receive a credit now (checked before the paying
        side is debited, so a transfer never stops half-way on a closed year)."""
        self._check_year_open(now)

    def close_year(self, year: int) -> None:
        if year in self.closed_years:
            raise RuleViolation(f"{year} is closed already for {self.id}")
        if self.reserved:
            raise RuleViolation(f"{len(self.reserved)} reservations are still pending")
        self._record(YearClosed(year=year, closing_balance_fen=self.balance_fen))

    def _check_covers(self, amount_fen: int) -> None:
        if self.kind is AccountKind.FUND and amount_fen > self.available_fen:
            raise RuleViolation(
                f"{self.id} has {self.available_fen / YUAN:.2f} yuan available "
                f"(balance less reservations), less than {amount_fen / YUAN:.2f}"
            )

    def _check_year_open(self, now: datetime) -> None:
        if now.year in self.closed_years:
            raise RuleViolation(f"the fiscal year {now.year} of {self.id} is closed")

    @applies
    def _on_opened(self, event: LedgerAccountOpened) -> None:
        self.kind, self.owner_code, self.name = event.kind, event.owner_code, event.name

    @applies
    def _on_reserved(self, event: FundsReserved) -> None:
        self.reserved[event.transfer_id] = event.amount_fen

    @applies
    def _on_released(self, event: ReservationReleased) -> None:
        self.reserved.pop(event.transfer_id, None)

    @applies
    def _on_debited(self, event: Debited) -> None:
        self.reserved.pop(event.transfer_id, None)
        self.entries.add(event.transfer_id)
        self.balance_fen -= event.amount_fen

    @applies
    def _on_credited(self, event: Credited) -> None:
        self.entries.add(event.transfer_id)
        self.balance_fen += event.amount_fen

    @applies
    def _on_year_closed(self, event: YearClosed) -> None:
        self.closed_years[event.year] = event.closing_balance_fen

    def snapshot_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "owner_code": self.owner_code,
            "name": self.name,
            "balance_fen": self.balance_fen,
            "reserved": self.reserved,
            "entries": sorted(self.entries),
            "closed_years": {str(y): b for y, b in self.closed_years.items()},
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self.kind, self.owner_code = AccountKind(state["kind"]), state["owner_code"]
        self.name, self.balance_fen = state["name"], state["balance_fen"]
        self.reserved, self.entries = dict(state["reserved"]), set(state["entries"])
        self.closed_years = {int(y): b for y, b in state["closed_years"].items()}
