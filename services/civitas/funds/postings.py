"""What each of funds' events does to an account, written once: the account it opens,
the money it books (signed: credits count up, debits down, with the other account),
the hold it places or releases; and which postings are an allocation or a payment.

Funds' ledger (the trial balance), funds' statements and insights' fund ledger take an
event's consequences from here, each into its own read model. This module is part of
funds' event contract, like its ``v1`` stubs: other services may import it, and it
imports nothing but the standard library.

A hold's release names only its transfer: what it releases is what the hold under that
transfer holds on that account, if anything (a void releases it; the debit that pays it
settles it). A reader keeps its holds by account and transfer to know the amount.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class Kind(enum.StrEnum):
    """What a posting is to the account it is booked on."""

    ALLOCATION = "allocation"  # money in from a budget (a source)
    DISBURSEMENT = "disbursement"  # money out to a payee or an expense account
    TRANSFER = "transfer"  # any other movement


BUDGETS = frozenset({"source"})
"""The kinds of account money is allocated from."""
PAID_OUT_TO = frozenset({"payee", "expense"})
"""The kinds of account a payment goes to (only an approved expenditure pays one)."""


def kind_of_account(account_id: str) -> str:
    """An account's kind, the first part of its id (``fund`` of ``fund:QH-01-01:special``)."""
    return account_id.partition(":")[0]


@dataclass(frozen=True, slots=True)
class Opened:
    """An account was opened: balance and holds start at zero."""

    kind: str
    owner_code: str
    name: str


@dataclass(frozen=True, slots=True)
class Held:
    """A pending reservation holds ``amount_fen`` under ``transfer_id``."""

    transfer_id: str
    amount_fen: int


@dataclass(frozen=True, slots=True)
class Released:
    """The hold under ``transfer_id`` holds nothing more, if there was one."""

    transfer_id: str


@dataclass(frozen=True, slots=True)
class Posted:
    """Money booked on the account: ``amount_fen`` is signed (credits up, debits down)."""

    transfer_id: str
    amount_fen: int
    counterpart: str
    booked_at: datetime
    memo: str

    @property
    def kind(self) -> Kind:
        other = kind_of_account(self.counterpart)
        if self.amount_fen > 0 and other in BUDGETS:
            return Kind.ALLOCATION
        if self.amount_fen < 0 and other in PAID_OUT_TO:
            return Kind.DISBURSEMENT
        return Kind.TRANSFER


Change = Opened | Held | Released | Posted

OPENED, RESERVED, RELEASED = "LedgerAccountOpened", "FundsReserved", "ReservationReleased"
DEBITED, CREDITED = "Debited", "Credited"
EVENT_TYPES = (OPENED, RESERVED, RELEASED, DEBITED, CREDITED)
"""The account events that change a balance or a hold (a year's close changes neither)."""


def changes(event_type: str, data: Mapping[str, Any]) -> tuple[Change, ...]:
    """What an event of this type and data (the stored JSON or the event's fields) does
    to its account, in order; nothing for an event that changes no balance or hold."""
    if event_type == OPENED:
        return (Opened(str(data["kind"]), data["owner_code"], data["name"]),)
    if event_type == RESERVED:
        return (Held(data["transfer_id"], data["amount_fen"]),)
    if event_type == RELEASED:
        return (Released(data["transfer_id"]),)
    if event_type == DEBITED:  # settles the hold it pays, if any
        return Released(data["transfer_id"]), _posted(data, -1, data["to_account"])
    if event_type == CREDITED:
        return (_posted(data, 1, data["from_account"]),)
    return ()


def posting(event_type: str, data: Mapping[str, Any]) -> Posted:
    """The money a debit or credit books."""
    found = [c for c in changes(event_type, data) if isinstance(c, Posted)]
    if not found:
        raise ValueError(f"{event_type} books no money")
    return found[0]


def _posted(data: Mapping[str, Any], sign: int, counterpart: str) -> Posted:
    booked_at = data["booked_at"]
    if isinstance(booked_at, str):
        booked_at = datetime.fromisoformat(booked_at)
    return Posted(
        data["transfer_id"], sign * data["amount_fen"], counterpart, booked_at, data.get("memo", "")
    )
