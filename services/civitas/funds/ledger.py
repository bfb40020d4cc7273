"""The ledger: funds' own read model of every account's balance, for the trial balance.

One row per account (balance, and what pending reservations hold), and one row per
pending reservation, so that the debit which settles a reservation releases its
hold here as it does on the account. Built by a projection from funds' events, each
taken for what ``civitas.funds.postings`` says it does to its account.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import sqlalchemy as sa

from civitas.eventkit import Projection, RecordedEvent, handles
from civitas.eventkit.readmodels import create_tables

from . import postings
from .domain.accounts import AccountKind

metadata = sa.MetaData()
accounts = sa.Table(
    "ledger_accounts",
    metadata,
    sa.Column("account_id", sa.String(80), primary_key=True),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("owner_code", sa.String(20), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("balance_fen", sa.BigInteger, nullable=False, default=0),
    sa.Column("reserved_fen", sa.BigInteger, nullable=False, default=0),
)
reservations = sa.Table(
    "ledger_reservations",
    metadata,
    sa.Column("account_id", sa.String(80), primary_key=True),
    sa.Column("transfer_id", sa.String(40), primary_key=True),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
)


class Ledger(Projection):
    """Balances of every account, kept as funds books entries and holds."""

    name = "funds_ledger"
    tables = (
        accounts,
        reservations,
    )

    def create(self, conn: sa.Connection) -> None:
        create_tables(conn, metadata)

    def clear(self, conn: sa.Connection) -> None:
        conn.execute(reservations.delete())
        conn.execute(accounts.delete())

    @handles(*postings.EVENT_TYPES)
    def on_account_event(self, event: RecordedEvent, conn: sa.Connection) -> None:
        """What the event does to its account (``civitas.funds.postings``), in order."""
        account = event.aggregate_id
        for change in postings.changes(event.type, event.data):
            match change:
                case postings.Opened(kind, owner_code, name):
                    conn.execute(
                        accounts.insert().values(
                            account_id=account,
                            kind=kind,
                            owner_code=owner_code,
                            name=name,
                            balance_fen=0,
                            reserved_fen=0,
                        )
                    )
                case postings.Held(transfer_id, amount):
                    conn.execute(
                        reservations.insert().values(
                            account_id=account, transfer_id=transfer_id, amount_fen=amount
                        )
                    )
                    self._change(conn, account, reserved=amount)
                case postings.Released(transfer_id):
                    self._settle(conn, account, transfer_id)
                case postings.Posted(amount_fen=amount):
                    self._change(conn, account, balance=amount)

    @staticmethod
    def _settle(conn: sa.Connection, account: str, transfer_id: str) -> None:
        """Release the hold under this transfer, if there is one."""
        held = (reservations.c.account_id == account) & (reservations.c.transfer_id == transfer_id)
        amount = conn.execute(sa.select(reservations.c.amount_fen).where(held)).scalar()
        if amount is not None:
            conn.execute(reservations.delete().where(held))
            Ledger._change(conn, account, reserved=-amount)

    @staticmethod
    def _change(conn: sa.Connection, account: str, balance: int = 0, reserved: int = 0) -> None:
        conn.execute(
            accounts.update()
            .where(accounts.c.account_id == account)
            .values(
                balance_fen=accounts.c.balance_fen + balance,
                reserved_fen=accounts.c.reserved_fen + reserved,
            )
        )


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """An account's line in the trial balance."""

    id: str
    kind: AccountKind
    owner_code: str
    name: str
    balance_fen: int
    available_fen: int


class LedgerQueries:
    """Reads of the ledger read model."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    async def trial_balance(self) -> list[AccountBalance]:
        """Every account's balance, by account id (the sum over all is zero)."""
        return await asyncio.to_thread(self._trial_balance)

    def _trial_balance(self) -> list[AccountBalance]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(accounts).order_by(accounts.c.account_id)).all()
        return [
            AccountBalance(
                row.account_id,
                AccountKind(row.kind),
                row.owner_code,
                row.name,
                row.balance_fen,
                row.balance_fen - row.reserved_fen,
            )
            for row in rows
        ]
