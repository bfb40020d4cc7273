"""A small domain for testing the kernel: a community account and its balances."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from civitas.eventkit import (
    Aggregate,
    DomainEvent,
    Projection,
    RecordedEvent,
    applies,
    handles,
    registry,
)


class InsufficientFunds(Exception):
    pass


class AccountClosed(Exception):
    pass


class AccountOpened(DomainEvent):
    schema_version = 2
    owner: str
    community: str


@registry.upcaster("AccountOpened", from_version=1)
def _opened_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "community": "unknown"}  # v1 had no community


class MoneyDeposited(DomainEvent):
    amount_fen: int


class MoneyWithdrawn(DomainEvent):
    amount_fen: int


class AccountWasClosed(DomainEvent):
    reason: str


class Account(Aggregate):
    category = "account"
    snapshot_every = 50

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.owner = ""
        self.community = ""
        self.balance_fen = 0
        self.is_open = False

    @classmethod
    def open(cls, aggregate_id: str, owner: str, community: str) -> Account:
        account = cls(aggregate_id)
        account._record(AccountOpened(owner=owner, community=community))
        return account

    def deposit(self, amount_fen: int) -> None:
        self._check_is_open()
        self._check_positive(amount_fen)
        self._record(MoneyDeposited(amount_fen=amount_fen))

    def withdraw(self, amount_fen: int) -> None:
        self._check_is_open()
        self._check_positive(amount_fen)
        self._check_has_sufficient_funds(amount_fen)
        self._record(MoneyWithdrawn(amount_fen=amount_fen))

    def close(self, reason: str) -> None:
        self._check_is_open()
        self._record(AccountWasClosed(reason=reason))

    def _check_is_open(self) -> None:
        if not self.is_open:
            raise AccountClosed(self.id)

    def _check_positive(self, amount_fen: int) -> None:
        if amount_fen <= 0:
            raise ValueError(f"amount must be positive, got {amount_fen}")

    def _check_has_sufficient_funds(self, amount_fen: int) -> None:
        if amount_fen > self.balance_fen:
            raise InsufficientFunds(f"{amount_fen} > balance {self.balance_fen}")

    @applies
    def _on_account_opened(self, event: AccountOpened) -> None:
        self.owner, self.community, self.is_open = event.owner, event.community, True

    @applies
    def _on_money_deposited(self, event: MoneyDeposited) -> None:
        self.balance_fen += event.amount_fen

    @applies
    def _on_money_withdrawn(self, event: MoneyWithdrawn) -> None:
        self.balance_fen -= event.amount_fen

    @applies
    def _on_account_was_closed(self, event: AccountWasClosed) -> None:
        self.is_open = False

    def snapshot_state(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "community": self.community,
            "balance_fen": self.balance_fen,
            "is_open": self.is_open,
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self.owner = state["owner"]
        self.community = state["community"]
        self.balance_fen = state["balance_fen"]
        self.is_open = state["is_open"]


metadata = sa.MetaData()
balances = sa.Table(
    "account_balances",
    metadata,
    sa.Column("account", sa.String, primary_key=True),
    sa.Column("community", sa.String, nullable=False),
    sa.Column("balance_fen", sa.BigInteger, nullable=False),
    sa.Column("movements", sa.Integer, nullable=False),
)
applied = sa.Table(  # one row per applied event: a second apply would violate the key
    "account_applied_events",
    metadata,
    sa.Column("position", sa.BigInteger, primary_key=True),
)


class BalancesProjection(Projection):
    name = "account_balances"

    def create(self, conn: sa.Connection) -> None:
        metadata.create_all(conn)

    def clear(self, conn: sa.Connection) -> None:
        conn.execute(balances.delete())
        conn.execute(applied.delete())

    @handles("AccountOpened")
    def on_opened(self, event: RecordedEvent, conn: sa.Connection) -> None:
        account = event.aggregate_id
        community = event.data.get("community", "unknown")
        conn.execute(
            balances.insert().values(
                account=account, community=community, balance_fen=0, movements=0
            )
        )
        conn.execute(applied.insert().values(position=event.position))

    @handles("MoneyDeposited", "MoneyWithdrawn")
    def on_movement(self, event: RecordedEvent, conn: sa.Connection) -> None:
        sign = 1 if event.type == "MoneyDeposited" else -1
        account = event.aggregate_id
        conn.execute(
            balances.update()
            .where(balances.c.account == account)
            .values(
                balance_fen=balances.c.balance_fen + sign * event.data["amount_fen"],
                movements=balances.c.movements + 1,
            )
        )
        conn.execute(applied.insert().values(position=event.position))


def read_balances(conn: sa.Connection) -> list[tuple[Any, ...]]:
    rows = conn.execute(sa.select(balances).order_by(balances.c.account))
    return [tuple(row) for row in rows]
