"""Accounts of a double-entry ledger, in integer fen.

A transfer is a debit on one account and a credit on another under one transfer
id. Each account remembers what each transfer id booked on it (the side, the
amount, the other account, the memo) and what each of its holds holds and for
whom: the same transfer id with the same booking is a retry and books nothing
again (a half-done transfer is completed, nothing is paid twice); the same id with
anything else is refused with :class:`AlreadyExists` and nothing is recorded, so a
key used once can never move other money.

Only sources (the district's budget, a department's budget) bring money in and may
run negative; every other account (a community's fund, a payee, an expense
account) never goes below zero, counting its pending holds.

Transfer ids live in two namespaces that never meet: those the system derives for
its own movements (:func:`transfer_id_for`: allocations, expenditures, tasks) and
those derived from a caller's idempotency key (:func:`client_transfer_id_for`).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from civitas.errors import AlreadyExists, InvalidInput, RuleViolation
from civitas.eventkit import Aggregate, DomainEvent, applies, natural_id

YUAN = 100  # fen per yuan
MAX_AMOUNT_FEN = 10**12
"""The most one movement may carry: 10,000,000,000 yuan (far above any budget line, and
far below what the ledger's 64-bit columns hold)."""
MAX_SOURCE_DEBT_FEN = 10**15
"""How far below zero a source (a budget) may run: 10 trillion yuan, so that no balance
leaves the 64-bit integers the ledger, its read models and the protos keep."""
MAX_KEY_CHARS = 100
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/#-]{0,99}")


class AccountKind(enum.StrEnum):
    SOURCE = "source"  # district or department budget: money enters the ledger here
    FUND = "fund"  # never below zero, counting reservations
    PAYEE = "payee"  # social organizations, vendors
    EXPENSE = "expense"


def transfer_id_for(system_key: str) -> str:
    """The transfer the system makes for one of its own keys (``allocation:2026:QH-01-01``,
    ``expenditure:<id>``, ``task:<id>``): a retry finds the same transfer. Never called
    with a caller's key (see :func:`client_transfer_id_for`)."""
    return str(natural_id("transfer", checked_key(system_key)))


def client_transfer_id_for(idempotency_key: str) -> str:
    """The transfer a caller's idempotency key names: derived in a namespace of its own,
    so that no key a caller sends can name a transfer the system derived for itself."""
    return str(natural_id("client-transfer", checked_key(idempotency_key)))


def checked_key(key: str) -> str:
    """An idempotency key as given, whole: 1-100 ASCII letters, digits and ``_.:@/#-``
    (a letter or digit first). Nothing is trimmed: a key with a space, an invisible or a
    look-alike character is refused, never taken for the key it resembles."""
    if not key:
        raise InvalidInput("idempotency_key is required")
    if not _KEY.fullmatch(key):
        raise InvalidInput(
            f"idempotency_key {key[:MAX_KEY_CHARS]!r} is not 1-{MAX_KEY_CHARS} ASCII letters, "
            "digits and _.:@/#- (a letter or digit first)"
        )
    return key


def check_amount(amount_fen: int) -> int:
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
        raise InvalidInput(f"an amount is a positive whole number of fen, not {amount_fen!r}")
    if amount_fen > MAX_AMOUNT_FEN:
        raise InvalidInput(f"an amount is at most {MAX_AMOUNT_FEN} fen, not {amount_fen}")
    return amount_fen


class Side(enum.StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class Booking:
    """What one transfer id booked on an account: a retry must ask for exactly this."""

    side: Side
    amount_fen: int
    counterpart: str  # the account paid, paid from, or held for
    memo: str = ""

    def describe(self) -> str:
        preposition = "from" if self.side is Side.CREDIT else "for"
        return f"a {self.side} of {self.amount_fen} fen {preposition} {self.counterpart}"


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
    snapshot_version = 3  # v2: what each transfer id booked, and for whom each hold is;
    # v3: each booking as one string (a snapshot of 5,000 entries parses 3 times faster)

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.kind = AccountKind.FUND
        self.owner_code = ""
        self.name = ""
        self.balance_fen = 0
        self.bookings: dict[str, Booking] = {}  # debits and credits, by transfer id
        self.holds: dict[str, Booking] = {}  # pending reservations, by transfer id
        self.released: set[str] = set()  # holds released (a void): never held again
        self.closed_years: dict[int, int] = {}

    @classmethod
    def open(cls, account_id: str, kind: AccountKind, owner_code: str, name: str) -> Account:
        account = cls(account_id)
        account._record(LedgerAccountOpened(kind=kind, owner_code=owner_code, name=name))
        return account

    @property
    def reserved(self) -> dict[str, int]:
        """What each pending hold holds, by transfer id."""
        return {transfer_id: hold.amount_fen for transfer_id, hold in self.holds.items()}

    @property
    def available_fen(self) -> int:
        """What may still be spent: the balance less pending reservations."""
        return self.balance_fen - sum(hold.amount_fen for hold in self.holds.values())

    def has_paid(self, transfer_id: str) -> bool:
        """Whether this account has booked the paying side of ``transfer_id``."""
        booked = self.bookings.get(transfer_id)
        return booked is not None and booked.side is Side.DEBIT

    def reserve(self, transfer_id: str, amount_fen: int, to_account: str) -> None:
        """Hold money for a payment to ``to_account``; a retry (held or paid already, the
        same amount for the same account) holds nothing more."""
        hold = Booking(Side.HOLD, check_amount(amount_fen), to_account)
        if self._held_or_paid_as(transfer_id, hold):
            return
        self._check_not_released(transfer_id)
        self._check_covers(amount_fen)
        self._record(
            FundsReserved(transfer_id=transfer_id, amount_fen=amount_fen, to_account=to_account)
        )

    def release(self, transfer_id: str, reason: str) -> None:
        if transfer_id not in self.holds:
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
        """Book the paying side; a hold under the same id (for the same amount and
        account) is settled by it. ``held_only``: pay only what a hold holds (an
        expenditure's payment: once its hold is released, by a void, it is not paid)."""
        if not self.check_debit(transfer_id, amount_fen, to_account, now, memo, held_only):
            return
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
        if not self.check_credit(transfer_id, amount_fen, from_account, now, memo):
            return
        self._record(
            Credited(
                transfer_id=transfer_id,
                amount_fen=amount_fen,
                from_account=from_account,
                booked_at=now,
                memo=memo,
            )
        )

    def check_debit(
        self,
        transfer_id: str,
        amount_fen: int,
        to_account: str,
        now: datetime,
        memo: str = "",
        held_only: bool = False,
    ) -> bool:
        """Raise unless this debit may be booked now; False when it is booked already
        (a retry). Checked on both accounts before either side is booked, so a transfer
        never stops half-way on a refusal."""
        wanted = Booking(Side.DEBIT, check_amount(amount_fen), to_account, memo)
        if self._booked_as(transfer_id, wanted):
            return False
        self._check_not_released(transfer_id)
        held = self.holds.get(transfer_id)
        if held is not None and (held.amount_fen, held.counterpart) != (amount_fen, to_account):
            raise self._conflict(transfer_id, held, wanted)
        if held_only and held is None:
            raise RuleViolation(f"nothing is held under {transfer_id}")
        self._check_year_open(now)
        if held is None:
            self._check_covers(amount_fen)
        return True

    def check_credit(
        self, transfer_id: str, amount_fen: int, from_account: str, now: datetime, memo: str = ""
    ) -> bool:
        """Raise unless this credit may be booked now; False when it is booked already."""
        wanted = Booking(Side.CREDIT, check_amount(amount_fen), from_account, memo)
        if self._booked_as(transfer_id, wanted):
            return False
        if transfer_id in self.holds or transfer_id in self.released:
            raise AlreadyExists(
                f"transfer {transfer_id} is a hold on {self.id}, not {wanted.describe()}"
            )
        self._check_year_open(now)
        return True

    def close_year(self, year: int) -> None:
        if year in self.closed_years:
            raise RuleViolation(f"{year} is closed already for {self.id}")
        if self.holds:
            raise RuleViolation(f"{len(self.holds)} reservations are still pending")
        self._record(YearClosed(year=year, closing_balance_fen=self.balance_fen))

    def _booked_as(self, transfer_id: str, wanted: Booking) -> bool:
        """True when ``transfer_id`` booked exactly ``wanted`` here; raise when it booked
        anything else."""
        booked = self.bookings.get(transfer_id)
        if booked is None:
            return False
        if booked != wanted:
            raise self._conflict(transfer_id, booked, wanted)
        return True

    def _held_or_paid_as(self, transfer_id: str, hold: Booking) -> bool:
        held = self.holds.get(transfer_id)
        if held is not None:
            if held != hold:
                raise self._conflict(transfer_id, held, hold)
            return True
        paid = self.bookings.get(transfer_id)
        if paid is None:
            return False
        if (paid.side, paid.amount_fen, paid.counterpart) != (
            Side.DEBIT,
            hold.amount_fen,
            hold.counterpart,
        ):
            raise self._conflict(transfer_id, paid, hold)
        return True

    def _conflict(self, transfer_id: str, booked: Booking, wanted: Booking) -> AlreadyExists:
        memo = " with another memo" if booked.memo != wanted.memo else ""
        return AlreadyExists(
            f"transfer {transfer_id} is {booked.describe()} on {self.id}, "
            f"not {wanted.describe()}{memo}; nothing was done"
        )

    def _check_not_released(self, transfer_id: str) -> None:
        if transfer_id in self.released:
            raise RuleViolation(f"nothing is held under {transfer_id}: it was released")

    def _check_covers(self, amount_fen: int) -> None:
        if self.kind is AccountKind.SOURCE:
            if self.balance_fen - amount_fen < -MAX_SOURCE_DEBT_FEN:
                raise RuleViolation(
                    f"{self.id} would owe more than {MAX_SOURCE_DEBT_FEN // YUAN:,} yuan"
                )
            return
        if amount_fen > self.available_fen:
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
        self.holds[event.transfer_id] = Booking(Side.HOLD, event.amount_fen, event.to_account)

    @applies
    def _on_released(self, event: ReservationReleased) -> None:
        self.holds.pop(event.transfer_id, None)
        self.released.add(event.transfer_id)

    @applies
    def _on_debited(self, event: Debited) -> None:
        self.holds.pop(event.transfer_id, None)
        self.bookings[event.transfer_id] = Booking(
            Side.DEBIT, event.amount_fen, event.to_account, event.memo
        )
        self.balance_fen -= event.amount_fen

    @applies
    def _on_credited(self, event: Credited) -> None:
        self.bookings[event.transfer_id] = Booking(
            Side.CREDIT, event.amount_fen, event.from_account, event.memo
        )
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
            "bookings": {t: _booking_out(b) for t, b in self.bookings.items()},
            "holds": {t: _booking_out(b) for t, b in self.holds.items()},
            "released": sorted(self.released),
            "closed_years": {str(y): b for y, b in self.closed_years.items()},
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self.kind, self.owner_code = AccountKind(state["kind"]), state["owner_code"]
        self.name, self.balance_fen = state["name"], state["balance_fen"]
        self.bookings = _Bookings(state["bookings"])
        self.holds = {t: _booking_in(b) for t, b in state["holds"].items()}
        self.released = set(state["released"])
        self.closed_years = {int(y): b for y, b in state["closed_years"].items()}


class _Bookings(dict[str, Any]):
    """What each transfer id booked, restored from a snapshot as the snapshot keeps it
    (strings) and made a :class:`Booking` only when one is asked for: an account with
    thousands of entries is loaded on every command, and building every booking each
    time cost a transfer ten times its time on a 5,000-entry account."""

    def get(self, transfer_id: str, default: Any = None) -> Any:
        value = super().get(transfer_id, default)
        if isinstance(value, str):
            value = self[transfer_id] = _booking_in(value)
        return value


def _booking_out(booking: Booking | str) -> str:
    """A booking as a snapshot keeps it: ``side|amount|counterpart|memo`` (an account id
    holds no ``|``, and the memo, last, may)."""
    if isinstance(booking, str):  # restored from a snapshot, never asked for since
        return booking
    return f"{booking.side.value}|{booking.amount_fen}|{booking.counterpart}|{booking.memo}"


def _booking_in(data: str) -> Booking:
    side, amount_fen, counterpart, memo = data.split("|", 3)
    return Booking(Side(side), int(amount_fen), counterpart, memo)
