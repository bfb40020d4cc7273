"""Leases: work that must run once (a relay, a projection on the store feed, a process
manager, the cases supervisor, anchoring) runs on one replica at a time, and moves to
another replica within a few seconds when its holder dies.

A lease is named by a database and a work name, and lives in the service's read-model
database: every replica of a service shares it (projections track their positions
there, the request log is there), it exists for every service, insights and services
on KurrentDB included, and it is where most leased work keeps its state.

* **PostgreSQL**: a session-level ``pg_try_advisory_lock`` on a connection of the
  lease's own (never one of a pool, which may be reset, recycled or starved), tried
  again every :data:`POLL_SECONDS` while another replica holds it. The key is two
  32-bit numbers, :data:`LEASE_LOCK_SPACE` and ``hashtext('<schema>:<work>')``: the
  two-key form never meets the one-key locks of the store and the vault, the first key
  is not the projections' (``PROJECTION_LOCK_SPACE``), and the schema keeps services
  and stores that share a database apart. Two works whose names hash alike would
  share one holder: slower, never unsafe.
* **SQLite** (one machine): ``flock`` on ``<database>.lease-<work>``; the kernel
  releases it when the process dies, however it dies.
* **No file** (an in-memory read model): a database no other process can see, so the
  lease is always held.

Why losing a PostgreSQL lease is safe. The server drops a session's advisory lock the
moment the session ends: a holder that dies (or is killed) frees its lease as soon as
its socket closes. A holder that is cut off but alive cannot know whether the server
still sees it, so it checks: ``SELECT 1`` every :data:`BEAT_SECONDS`, given
:data:`BEAT_TIMEOUT` to answer; on any failure its work is cancelled at once, and then
the connection closed. When the server ends the session first (an operator's
``pg_terminate_backend``, a restart), another replica may take the lease while the
old holder has not noticed yet: the two overlap for at most ``BEAT_SECONDS +
BEAT_TIMEOUT`` (2 s) plus the time a cancelled step takes to stop. That overlap cannot
corrupt anything: each projection and process manager batch takes the projection's
transaction lock and skips what its stream versions say is applied, the relay's
checkpoint only moves forward and a message published twice is skipped by stream
version downstream, the supervisor's notices and every command append with an
expected version, and an anchor signs a tree head the store really has.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
from pathlib import Path
from typing import Protocol

import asyncpg
import sqlalchemy as sa

log = logging.getLogger(__name__)

LEASE_LOCK_SPACE = 0x6C7365  # "lse": the first key of every lease
POLL_SECONDS = 0.5  # how often a replica that does not hold a lease tries it again
BEAT_SECONDS = 1.0  # how often a holder checks that its session is alive
BEAT_TIMEOUT = 1.0  # how long the server has to answer that check
CONNECT_TIMEOUT = 5.0
_UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
_WORK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class Lease(Protocol):
    """One work's lease: held by one replica at a time."""

    work: str

    async def acquire(self) -> None:
        """Return once this replica holds the lease (wait while another holds it)."""
        ...

    async def lost(self) -> None:
        """Return when the lease held is lost; the holder must stop its work at once."""
        ...

    async def release(self) -> None:
        """Let the lease go (another replica may take it); safe when not held."""
        ...


def _checked(work: str) -> str:
    if not _WORK.fullmatch(work):
        raise ValueError(
            f"lease name {work!r}: letters, digits, '_', '.' and '-', at most 100 characters"
        )
    return work


class HeldLease:
    """The lease of a database no other process sees: always held."""

    def __init__(self, work: str) -> None:
        self.work = _checked(work)

    async def acquire(self) -> None:
        """Held at once."""

    async def lost(self) -> None:
        """Never lost."""
        await asyncio.Event().wait()

    async def release(self) -> None:
        """Nothing to let go."""


class FileLease:
    """An exclusive ``flock`` on a file beside a SQLite database; the kernel releases
    it when the process ends. Locks of two open files exclude each other even within
    one process, so two replicas in one test exclude each other too."""

    def __init__(self, path: Path, work: str, *, poll: float = POLL_SECONDS) -> None:
        self.work = _checked(work)
        self.path = path
        self.poll = poll
        self._fd: int | None = None

    async def acquire(self) -> None:
        """Try the lock every ``poll`` seconds until it is held."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._fd = fd
                    return
                except BlockingIOError:
                    await asyncio.sleep(self.poll)
        except BaseException:
            os.close(fd)
            raise

    async def lost(self) -> None:
        """A lock of a live process is never lost."""
        await asyncio.Event().wait()

    async def release(self) -> None:
        """Unlock and close the file."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor drops the flock


class PostgresLease:
    """A session-level advisory lock on a connection of the lease's own (see the
    module's docstring for the key and for why losing it is safe)."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        work: str,
        *,
        poll: float = POLL_SECONDS,
        beat: float = BEAT_SECONDS,
        beat_timeout: float = BEAT_TIMEOUT,
    ) -> None:
        self.work = _checked(work)
        self.key = f"{schema}:{work}"
        self.dsn = dsn
        self.poll, self.beat, self.beat_timeout = poll, beat, beat_timeout
        self._conn: asyncpg.Connection | None = None

    async def acquire(self) -> None:
        """Try the lock every ``poll`` seconds until it is held; a database that cannot
        be reached is tried again the same way."""
        while True:
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT)
                held = await self._conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))", LEASE_LOCK_SPACE, self.key
                )
                if held:
                    return
            except _UNREACHABLE as unreachable:
                log.warning("lease %s: database not reachable (%r)", self.work, unreachable)
                await self._drop()
            await asyncio.sleep(self.poll)

    async def lost(self) -> None:
        """Check the session every ``beat`` seconds; return when a check fails or takes
        too long. The holder then stops its work and only then releases the lease
        (closing the connection): while the server still sees the session, nobody
        takes the lease before the work has stopped."""
        conn = self._conn
        while conn is not None:
            await asyncio.sleep(self.beat)
            try:
                async with asyncio.timeout(self.beat_timeout):
                    await conn.fetchval("SELECT 1")
            except _UNREACHABLE as why:
                log.warning("lease %s lost: its session did not answer (%r)", self.work, why)
                return

    async def release(self) -> None:
        """Close the lease's connection: the server drops the session's lock with it."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                async with asyncio.timeout(self.beat_timeout):
                    await conn.close()
            except _UNREACHABLE:
                conn.terminate()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # no goodbye to a server that may not answer


def lease_at(url: str, work: str) -> Lease:
    """The lease of ``work`` in the read-model database ``url`` names
    (``postgresql://…?schema=name``, ``sqlite:///path``); :class:`ValueError` for a
    URL of another kind or a bad work name."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            return HeldLease(work)
        return FileLease(Path(f"{database}.lease-{_checked(work)}"), work)
    if parsed.get_backend_name() == "postgresql":
        schema = str(parsed.query.get("schema", "public"))
        dsn = parsed.set(drivername="postgresql", query={})
        return PostgresLease(dsn.render_as_string(hide_password=False), schema, work)
    raise ValueError(f"no lease in a {parsed.get_backend_name()} database: name a SQL one")


async def lease_in(engine: sa.Engine, work: str) -> Lease:
    """The lease of ``work`` in the read-model database of ``engine`` (its PostgreSQL
    schema is asked of the database: the engine keeps it in its search path)."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        schema = await asyncio.to_thread(_current_schema, engine)
        url = url.set(query={"schema": schema})
    return lease_at(url.render_as_string(hide_password=False), work)


def _current_schema(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(conn.scalar(sa.text("SELECT current_schema()")) or "public")
