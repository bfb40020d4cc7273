"""What a transfer id moves, recorded before either account is booked.

Each account remembers what a transfer id booked on it, but only on itself: after a
crash between the debit and the credit, a request reusing the key with another source
found neither account of its own booked, and could credit the target from there while
the first debit stayed without its credit (the ledger no longer summed to zero, and
the real retry was refused). A transfer's own record, written once before the debit,
binds its id to the whole movement (both accounts, the amount, the memo), so any other
movement under that id is refused wherever it would land.
"""

from __future__ import annotations

from civitas.errors import AlreadyExists
from civitas.eventkit import Aggregate, DomainEvent, applies


class TransferIntended(DomainEvent):
    """A transfer id was bound to one movement, before its entries were booked."""

    from_account: str
    to_account: str
    amount_fen: int
    memo: str


class TransferRecord(Aggregate):
    category = "transfer"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.movement: tuple[str, str, int, str] | None = None

    @classmethod
    def intend(
        cls, transfer_id: str, from_account: str, to_account: str, amount_fen: int, memo: str
    ) -> TransferRecord:
        record = cls(transfer_id)
        record._record(
            TransferIntended(
                from_account=from_account, to_account=to_account, amount_fen=amount_fen, memo=memo
            )
        )
        return record

    def check_same(self, from_account: str, to_account: str, amount_fen: int, memo: str) -> None:
        """Raise unless this record binds exactly this movement."""
        if self.movement != (from_account, to_account, amount_fen, memo):
            source, target, amount, _ = self.movement or ("?", "?", 0, "")
            raise AlreadyExists(
                f"transfer {self.id} moves {amount} fen from {source} to {target}"
                f"{'' if self.movement and self.movement[3] == memo else ' with another memo'}; "
                "nothing was done"
            )

    @applies
    def _on_intended(self, event: TransferIntended) -> None:
        self.movement = (event.from_account, event.to_account, event.amount_fen, event.memo)
