"""Read-model tables, created and versioned one process at a time.

Any number of processes (every service, and replicas of each) may start together
against one fresh database, and several services may share one read-model schema
(the README's PostgreSQL setup). ``CREATE TABLE IF NOT EXISTS`` from two of them at
once is not safe: on PostgreSQL the loser fails on the catalog's unique index
(``pg_type_typname_nsp_index``). So every table of a read-model, vault or request-log
database is made through :func:`create_tables`, in a transaction that first takes
the schema's lock (:func:`hold_schema`): on PostgreSQL an advisory lock keyed by the
schema's name, on SQLite the database's write lock (``BEGIN IMMEDIATE``). The loser
waits, then finds the tables made. A schema is made under the same lock, when a
connection finds it missing (:func:`ensure_schema`).

A read model is rebuilt from events, so its migration is a rebuild: a projection
declares a ``version``; ``read_model_versions`` records the version each read model
was built by. A newer version in the code drops the read model's tables, makes them
anew and resets its tracking, so that it is built again from the feed, once (see
``ProjectionRunner.setup``). A recorded version newer than the code's is refused
(:class:`ReadModelTooNew`): an older release must not write into a newer shape.

Who owns which table (services may share a schema): the kernel's tables
(tracking, parking, request log, versions) are keyed by names unique per service
(consumer names start with their service's name; the request log has its
``service`` column), and a service's own read-model tables carry its prefix;
``tests/unit/test_read_model_tables.py`` keeps both true. The vault's tables have no
service key: a vault is one service's alone (its own SQLite file, or its own schema
when the URL names none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import sqlalchemy as sa

SCHEMA_LOCK_SPACE = 0x72646D  # "rdm": the first key of the schema locks

versions = sa.MetaData()
versions_table = sa.Table(
    "read_model_versions",
    versions,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)


class ReadModelTooNew(RuntimeError):
    """A read model was built by a newer version of its projection than this code's."""

    def __init__(self, name: str, found: int, known: int) -> None:
        super().__init__(
            f"read model {name!r} was built by version {found} of its projection, and this "
            f"release knows version {known}: run a release that knows version {found}, or "
            "drop the read model's tables and its row in read_model_versions to rebuild it"
        )


def hold_schema(conn: sa.Connection) -> None:
    """Take the schema's lock for the rest of ``conn``'s transaction (call it first).

    PostgreSQL: an advisory lock on the current schema's name (re-entrant), in a key
    space of its own. SQLite: ``BEGIN IMMEDIATE``, unless the transaction has begun
    already (then it was begun by this function or by another holder of the write lock,
    such as ``hold_projection``; the driver itself begins only at the first write)."""
    if conn.dialect.name == "sqlite":
        if not getattr(conn.connection.dbapi_connection, "in_transaction", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        return
    conn.execute(
        sa.select(
            sa.func.pg_advisory_xact_lock(
                SCHEMA_LOCK_SPACE, sa.func.hashtext(sa.func.current_schema())
            )
        )
    )


def create_tables(
    conn: sa.Connection, *metadata: sa.MetaData, tables: Sequence[sa.Table] | None = None
) -> None:
    """Create the missing tables of ``metadata`` (only ``tables``, when given), under the
    schema's lock: the one way tables of a read-model database are made."""
    hold_schema(conn)
    for each in metadata:
        each.create_all(conn, tables=None if tables is None else list(tables))


def in_own_transaction(engine: sa.Engine, *metadata: sa.MetaData) -> None:
    """:func:`create_tables` in a transaction of its own (blocking: run it on a thread)."""
    with engine.begin() as conn:
        create_tables(conn, *metadata)


def ensure_schema(dbapi_conn: Any, schema: str) -> None:
    """Make a PostgreSQL schema if it is missing, under the lock its tables are made
    under (a raw psycopg connection, as an engine's ``connect`` event has it). Another
    creator that takes no such lock (an event store sharing the schema) may still win
    the race: the schema then exists, which is all that is asked."""
    with dbapi_conn.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if cursor.fetchone() is None:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (SCHEMA_LOCK_SPACE, schema)
            )
            try:
                cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            except psycopg.errors.UniqueViolation:
                dbapi_conn.rollback()
                return
    dbapi_conn.commit()


def found_version(conn: sa.Connection, name: str, tables: tuple[sa.Table, ...]) -> int | None:
    """The version the read model ``name`` was built by: recorded, or 1 when its tables
    exist but no version was recorded (made before versions were), or None (not made)."""
    recorded = conn.scalar(sa.select(versions_table.c.version).where(versions_table.c.name == name))
    if recorded is None and any(sa.inspect(conn).has_table(t.name) for t in tables):
        return 1
    return None if recorded is None else int(recorded)


def drop_tables(conn: sa.Connection, tables: tuple[sa.Table, ...]) -> None:
    """Drop a read model's tables (for a rebuild in a new shape), under the schema's lock."""
    hold_schema(conn)
    for table in reversed(tables):
        table.drop(conn, checkfirst=True)


def record_version(conn: sa.Connection, name: str, version: int) -> None:
    """Record that the read model ``name`` is built by ``version`` of its projection."""
    updated = conn.execute(
        versions_table.update().where(versions_table.c.name == name).values(version=version)
    )
    if updated.rowcount == 0:
        conn.execute(versions_table.insert().values(name=name, version=version))
