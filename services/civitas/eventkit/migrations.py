"""Versioned migrations of the event stores' schemas (PostgreSQL and SQLite).

A store records each migration applied to it in its own ``schema_migrations`` table
(version, when, what). Opening a store applies the missing ones, in order and in one
transaction, under a lock its backend provides (PostgreSQL: an advisory transaction
lock; SQLite: a write transaction): of many processes opening a store at once, the
first applies them and the others find them applied. Migration 1 of each backend is
the schema as the releases before versioning made it, written to be idempotent, so a
store one of them made (its tables there, no ``schema_migrations``) comes under
versioning by running it once more.

A store migrated beyond what the code knows is refused at open: a replica of the
older release, restarted during a rolling upgrade, must not write with the functions
and tables it knew.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import EventStoreError

Step = TypeVar("Step")


@dataclass(frozen=True, slots=True)
class Migration(Generic[Step]):
    """One numbered change of a store's schema; ``step`` is what the backend runs
    (SQL for PostgreSQL, a function of the connection for SQLite)."""

    version: int
    description: str
    step: Step


class SchemaTooNew(EventStoreError):
    """The store was migrated by a newer release than this code."""

    def __init__(self, store: str, found: int, known: int) -> None:
        super().__init__(
            f"{store} is at schema version {found}, but this code knows versions up to "
            f"{known}: a newer release migrated it. Run that release (or a later one); "
            "this one would write with functions and tables the store no longer has"
        )
        self.found = found
        self.known = known


def numbered(*migrations: Migration[Step]) -> tuple[Migration[Step], ...]:
    """The migrations of one backend, checked to be numbered 1, 2, 3 ... in order."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise ValueError(f"migrations must be numbered 1..n in order, not {versions}")
    return migrations


def pending(
    store: str, migrations: Sequence[Migration[Step]], applied: Collection[int]
) -> list[Migration[Step]]:
    """The migrations still to apply to a store that has ``applied``, in order; a store
    with a version beyond the last one known is refused (:class:`SchemaTooNew`)."""
    newest, known = max(applied, default=0), migrations[-1].version
    if newest > known:
        raise SchemaTooNew(store, newest, known)
    return [m for m in migrations if m.version not in applied]
