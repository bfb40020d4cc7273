"""Infrastructure chosen by settings: store and read-model URLs from the environment.

A service-specific variable (``CIVITAS_CASES_EVENTSTORE_URL``) overrides the shared
one (``CIVITAS_EVENTSTORE_URL``). URLs: ``sqlite:///path``, ``postgresql://…``
(``?schema=name`` picks the PostgreSQL schema; the default is ``civitas``), and
``memory://`` for tests and demos only: a fresh store in this process, whose events
are lost when it exits.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError

from .clock import Clock
from .files import private_file
from .memory import InMemoryEventStore
from .postgres import PostgresEventStore
from .readmodels import ensure_schema
from .sqlite import SqliteEventStore
from .store import EventStore

DEFAULT_EVENTSTORE_URL = "sqlite:///var/eventstore.db"
MEMORY_URL = "memory://"

_log = logging.getLogger(__name__)


def setting(
    name: str,
    service: str | None = None,
    default: str | None = None,
    *,
    environ: Mapping[str, str],
) -> str | None:
    """``CIVITAS_<SERVICE>_<NAME>`` if set in ``environ``, else ``CIVITAS_<NAME>``, else
    ``default``. The kernel reads no environment: the chassis's settings give it one."""
    if service:
        specific = environ.get(f"CIVITAS_{service.upper()}_{name.upper()}")
        if specific:
            return specific
    return environ.get(f"CIVITAS_{name.upper()}") or default


async def open_event_store(url: str, *, clock: Clock | None = None, **options: Any) -> EventStore:
    """Open the event store a URL names."""
    if url.startswith("memory:"):
        return _memory_store(url, clock=clock, **options)
    if url.startswith(KURRENTDB_SCHEMES):
        from .kurrentdb import KurrentDBEventStore  # only where KurrentDB is used

        if clock is not None:
            options["clock"] = clock
        return await KurrentDBEventStore.open(url, **options)
    parsed = _parse(url)
    if clock is not None:
        options["clock"] = clock
    if parsed.drivername == "sqlite":
        return SqliteEventStore(_sqlite_path(parsed, url), **options)
    schema = parsed.query.get("schema", "civitas")
    dsn = parsed.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    return await PostgresEventStore.open(dsn, schema=str(schema), **options)


def _memory_store(url: str, **options: Any) -> EventStore:
    if url != MEMORY_URL:
        raise ValueError(f"{_shown(url)}: the memory store is named by {MEMORY_URL} alone")
    _log.warning("event store in memory: its events are lost when this process exits")
    return InMemoryEventStore(**options)


KURRENTDB_SCHEMES = ("kurrentdb://", "kurrentdb+discover://", "esdb://", "esdb+discover://")


def _shown(url: str) -> str:
    """A URL as an error message may show it: its password masked (the message reaches
    stderr and logs, which must not hold secrets)."""
    return repr(re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url))


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(
            f"{_shown(url)} is not a store URL (sqlite:///path, postgresql://..., kurrentdb://...)"
        ) from None
    if parsed.drivername == "postgres":
        parsed = parsed.set(drivername="postgresql")
    if parsed.drivername not in ("sqlite", "postgresql"):
        raise ValueError(f"unknown database URL scheme {parsed.drivername!r} in {_shown(url)}")
    return parsed


def _sqlite_path(parsed: URL, url: str) -> str:
    if not parsed.database or parsed.database == ":memory:":
        raise ValueError(f"sqlite URL {_shown(url)} names no file (sqlite:///path/to/file.db)")
    return parsed.database


def create_read_model_engine(url: str) -> Engine:
    """A SQLAlchemy engine for a read-model database (SQLite or PostgreSQL).

    Read models are written by synchronous projection code, a whole batch per call
    on a worker thread (see :class:`ProjectionRunner`), so the engine is a sync one:
    sqlite3, or psycopg for PostgreSQL (``?schema=name`` sets the search path, and the
    schema is made on first use). Its tables are made through
    :func:`civitas.eventkit.readmodels.create_tables`, one process at a time.
    """
    parsed = _parse(url)
    if parsed.drivername == "sqlite":
        private_file(Path(_sqlite_path(parsed, url)))  # owner-only before SQLite opens it
        engine = create_engine(parsed.set(drivername="sqlite+pysqlite"))

        @event.listens_for(engine, "connect")
        def _durable(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    schema = str(parsed.query.get("schema", "public"))
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise ValueError(f"schema name {schema!r} must be a lower-case SQL identifier")
    engine = create_engine(
        parsed.set(drivername="postgresql+psycopg", query={}),
        pool_size=5,
        connect_args={"options": f"-csearch_path={schema}"},
    )

    @event.listens_for(engine, "connect")
    def _own_schema(dbapi_conn: Any, _record: object) -> None:
        ensure_schema(dbapi_conn, schema)  # under the lock its tables are made under

    return engine
