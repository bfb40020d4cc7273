"""The PostgreSQL event store (asyncpg).

Global positions come from a sequence, and a row becomes visible when its
transaction commits, so a naive reader that resumes "after the last position it
saw" skips events of a slower transaction that took a lower position. Readers here
see positions only up to a horizon below which no append is still in flight:

- An append, under a short advisory lock that serializes the reservation of
  positions, first takes its in-flight marker, a shared transaction-level advisory
  lock keyed by the store's schema and the first position it is about to reserve
  (the sequence's next value: only holders of the reservation lock call nextval),
  then reserves its positions. The marker lasts until its transaction ends. One
  round trip, as before.
- A reader (``horizon()``) reads the last reserved position ``h`` first (sequences
  are not bound to snapshots), then the markers of its schema in ``pg_locks``: the
  horizon is one below the lowest marked position, else ``h``.
- It reads rows up to the horizon in a later statement, with a newer snapshot.

Why nothing is skipped: an append holding a position up to ``h`` reserved it before
the reader read ``h``, so it took its marker before that too. Either the reader
still finds the marker, and the horizon stays below the append's positions; or the
append's transaction has ended, and PostgreSQL releases a transaction's locks only
after its commit is visible to new snapshots, so the later statement sees its rows
(or it aborted and left a gap, which readers pass). Rows up to the horizon are
final. What a reader sees is always a gap-free prefix of the log, while commits
(and their fsyncs) still run concurrently and PostgreSQL groups them.

Readers wait only for appends to this store. Before migration 2 they waited below
the snapshot's xmin, so any transaction open anywhere on the server (a report, a
``pg_dump``, a session idle in transaction, in another database too) froze every
subscriber. Markers carry the low 32 bits of a position (the two-int lock key) and
are placed near ``h``: right while an append stays in flight for fewer than 2^31
positions reserved after it. A two-int advisory lock that other software takes with
a store's schema key would read as an append in flight: readers would wait for it,
never skip. The horizon needs READ COMMITTED (a new snapshot per statement) and
refuses other isolation levels.

The ledger (the global chain) follows the same horizon: a row cannot chain to the
previous position at insert time without serializing writers until commit, so a
sealer extends the ledger over rows below the horizon, in position order, one
sealer at a time (``seal``, a plpgsql function: each of its statements takes a new
snapshot). Each append runs it after its own insert, sealing what committed before
it (its own marker keeps its rows out); ``verify`` runs it first.

The schema is versioned (:mod:`.migrations`): migration 1 is the tables as the
releases before versioning made them, migration 2 the functions above.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from .audit import LedgerEntry, RawEvent
from .errors import ConcurrencyError, EventIdConflict
from .hashing import GENESIS
from .migrations import Migration, numbered, pending
from .records import AppendResult, EventFilter, ExpectedVersion, RecordedEvent, StreamState
from .store import EventStore, PreparedEvent, idempotent_result, stored_trace_context

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_EXPECTED_CODES = {StreamState.NO_STREAM: -1, StreamState.ANY: -2, StreamState.EXISTS: -3}
_LOCK_KEY = 0x63697669  # "civi": serializes only the reservation of positions
_SEAL_LOCK = _LOCK_KEY + 2  # one sealer at a time (+1 guards the migrations)

_MIGRATIONS_TABLE = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
    version     integer     PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    description text        NOT NULL
);
"""

# Migration 1: the tables as the releases before versioning made them, idempotent, so
# that it also brings one of their stores (and older ones) under versioning.
_TABLES = """
CREATE SEQUENCE IF NOT EXISTS {s}.event_position;
CREATE TABLE IF NOT EXISTS {s}.events (
    position       bigint      PRIMARY KEY,
    tx_id          xid8        NOT NULL,
    event_id       uuid        NOT NULL UNIQUE,
    stream_id      text        NOT NULL,
    category       text        NOT NULL,
    stream_version bigint      NOT NULL,
    type           text        NOT NULL,
    schema_version integer     NOT NULL,
    occurred_at    timestamptz NOT NULL,
    actor          text,
    correlation_id text,
    causation_id   text,
    data           text        NOT NULL,
    hash           bytea       NOT NULL,
    trace_context  text,
    UNIQUE (stream_id, stream_version)
);
-- A store made before events kept their trace context (not hashed) gets the column,
-- and its append functions give way to the ones that take it (migration 2).
ALTER TABLE {s}.events ADD COLUMN IF NOT EXISTS trace_context text;
DROP FUNCTION IF EXISTS {s}.append_and_seal(text, text, bigint, uuid[], text[], integer[],
    timestamptz[], text[], text[], text[], text[], bytea[]);
DROP FUNCTION IF EXISTS {s}.append_events(text, text, bigint, uuid[], text[], integer[],
    timestamptz[], text[], text[], text[], text[], bytea[]);
CREATE INDEX IF NOT EXISTS events_by_category ON {s}.events (category, position);
CREATE INDEX IF NOT EXISTS events_by_type ON {s}.events (type, position);
CREATE TABLE IF NOT EXISTS {s}.checkpoints (
    name     text   PRIMARY KEY,
    position bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.streams (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL,
    hash      bytea  NOT NULL
);
-- The store's identity: made with the schema, in its transaction, never replaced.
CREATE TABLE IF NOT EXISTS {s}.store_identity (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    identity uuid    NOT NULL
);
INSERT INTO {s}.store_identity (identity) VALUES (gen_random_uuid()) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS {s}.ledger (
    position       bigint PRIMARY KEY,
    stream_id      text   NOT NULL,
    stream_version bigint NOT NULL,
    link           bytea  NOT NULL
);
"""

# Migration 2: appends mark themselves in flight; readers and the sealer stop below the
# lowest mark (the module docstring says why that never skips a late commit).
_FUNCTIONS = """
CREATE OR REPLACE FUNCTION {s}.horizon() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_reserved bigint;
    v_horizon bigint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION USING ERRCODE = 'CV002', MESSAGE = 'event store reads need READ '
            'COMMITTED: rows up to the horizon are read with a snapshot taken after it';
    END IF;
    -- 1. The last position reserved (not bound to a snapshot) ...
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO v_reserved
        FROM {s}.event_position;
    -- 2. ... then the appends still in flight: each marked with the low 32 bits of its
    --    first position, placed within 2^31 of v_reserved.
    SELECT least(v_reserved, min(v_reserved + d - CASE WHEN d > 2147483648
                                                     THEN 4294967296 ELSE 0 END) - 1)
      INTO v_horizon
      FROM (SELECT ((l.objid::bigint - v_reserved) % 4294967296 + 4294967296) % 4294967296
                   AS d
              FROM pg_locks l
             WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.classid = {marker}
               AND l.database = (SELECT oid FROM pg_database
                                  WHERE datname = current_database())) AS in_flight;
    RETURN v_horizon;
END
$fn$;

CREATE OR REPLACE FUNCTION {s}.append_events(
    p_stream text, p_category text, p_expected bigint,
    p_ids uuid[], p_types text[], p_schema_versions integer[], p_occurred timestamptz[],
    p_actors text[], p_correlations text[], p_causations text[], p_data text[], p_digests bytea[],
    p_traces text[] DEFAULT NULL
) RETURNS TABLE (last_version bigint, last_position bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    n integer := coalesce(array_length(p_ids, 1), 0);
    v_first bigint;
    v_positions bigint[];
    v_version bigint;
    v_hash bytea;
    v_hashes bytea[] := '{{}}';
BEGIN
    -- 1. Under a short lock: the in-flight marker (until this transaction ends, keyed by
    --    the low 32 bits of the first position, as a signed int4), then the positions.
    IF n > 0 THEN
        PERFORM pg_advisory_lock({lock});
        SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END INTO v_first
            FROM {s}.event_position;
        PERFORM pg_advisory_xact_lock_shared(
            {marker}, ((v_first + 2147483648) % 4294967296 - 2147483648)::integer);
        SELECT array_agg(nextval('{s}.event_position') ORDER BY g) INTO v_positions
            FROM generate_series(1, n) AS g;
        PERFORM pg_advisory_unlock({lock});
        IF v_positions[1] <> v_first THEN
            RAISE EXCEPTION USING ERRCODE = 'CV003', MESSAGE = format(
                'positions of %s were taken outside append_events: marked %s, reserved %s',
                '{s}', v_first, v_positions[1]);
        END IF;
    END IF;

    -- 2. Lock the stream's head (a new stream's row is made first, so that a
    --    concurrent first append waits for it); check the expected version.
    IF n > 0 THEN
        INSERT INTO {s}.streams (stream_id, version, hash)
            VALUES (p_stream, -1, '\\x{genesis}'::bytea) ON CONFLICT (stream_id) DO NOTHING;
    END IF;
    SELECT s.version, s.hash INTO v_version, v_hash
        FROM {s}.streams s WHERE s.stream_id = p_stream FOR UPDATE;
    v_version := nullif(v_version, -1);

    -- 3. Expected version. (An exact retry of a stored append fails here or on the
    --    unique event id; the caller then returns the stored result.)
    IF (p_expected = -1 AND v_version IS NOT NULL)
       OR (p_expected = -3 AND v_version IS NULL)
       OR (p_expected >= 0 AND v_version IS DISTINCT FROM p_expected) THEN
        RAISE EXCEPTION USING ERRCODE = 'CV001',
            MESSAGE = coalesce(v_version::text, 'none');
    END IF;
    IF n = 0 THEN
        RETURN QUERY SELECT coalesce(v_version, -1), NULL::bigint;
        RETURN;
    END IF;

    -- 4. Chain the hashes and insert (tx_id records the writing transaction).
    v_version := coalesce(v_version, -1);
    FOR i IN 1..n LOOP
        v_hash := sha256(v_hash || p_digests[i]);
        v_hashes := v_hashes || v_hash;
    END LOOP;
    INSERT INTO {s}.events (position, tx_id, event_id, stream_id, category, stream_version,
                            type, schema_version, occurred_at, actor, correlation_id,
                            causation_id, data, hash, trace_context)
    SELECT v_positions[i], pg_current_xact_id(), p_ids[i], p_stream, p_category,
           v_version + i, p_types[i], p_schema_versions[i], p_occurred[i], p_actors[i],
           p_correlations[i], p_causations[i], p_data[i], v_hashes[i], p_traces[i]
      FROM generate_series(1, n) AS i;
    INSERT INTO {s}.streams (stream_id, version, hash) VALUES (p_stream, v_version + n, v_hash)
        ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, hash = excluded.hash;
    RETURN QUERY SELECT v_version + n, v_positions[n];
END
$fn$;

-- The sealer: extends the ledger over rows below the horizon, in position order, one
-- sealer at a time (-1: another one holds the turn).
CREATE OR REPLACE FUNCTION {s}.seal(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_position bigint := 0;
    v_link bytea := '\\x{genesis}'::bytea;
    v_horizon bigint;
    n integer := 0;
    r record;
BEGIN
    IF NOT pg_try_advisory_xact_lock({seal_lock}) THEN
        RETURN -1;
    END IF;
    SELECT l.position, l.link INTO v_position, v_link
        FROM {s}.ledger l ORDER BY l.position DESC LIMIT 1;
    IF NOT FOUND THEN
        v_position := 0;
        v_link := '\\x{genesis}'::bytea;
    END IF;
    v_horizon := {s}.horizon();
    FOR r IN SELECT e.position, e.stream_id, e.stream_version, e.hash FROM {s}.events e
              WHERE e.position > v_position AND e.position <= v_horizon
              ORDER BY e.position LIMIT p_limit LOOP
        v_link := sha256(v_link || r.hash || int8send(r.position) || int8send(r.stream_version)
                         || convert_to(r.stream_id, 'UTF8'));
        INSERT INTO {s}.ledger (position, stream_id, stream_version, link)
            VALUES (r.position, r.stream_id, r.stream_version, v_link);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$fn$;

-- An append, then the sealer over what committed before it (its own rows wait for
-- the next append, or verify): the merge delay of one append.
CREATE OR REPLACE FUNCTION {s}.append_and_seal(
    p_stream text, p_category text, p_expected bigint,
    p_ids uuid[], p_types text[], p_schema_versions integer[], p_occurred timestamptz[],
    p_actors text[], p_correlations text[], p_causations text[], p_data text[], p_digests bytea[],
    p_traces text[] DEFAULT NULL
) RETURNS TABLE (last_version bigint, last_position bigint)
LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM {s}.append_events(
        p_stream, p_category, p_expected, p_ids, p_types, p_schema_versions, p_occurred,
        p_actors, p_correlations, p_causations, p_data, p_digests, p_traces);
    IF coalesce(array_length(p_ids, 1), 0) > 0 THEN
        PERFORM {s}.seal(1000);
    END IF;
END
$fn$;

-- The releases before versioning ran their whole schema at every open, which would put
-- back an append without in-flight markers; it inserts the store's identity first, so
-- refusing that insert stops it there (its transaction rolls back, nothing changes).
CREATE OR REPLACE FUNCTION {s}.identity_is_made_once() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'CV004', MESSAGE = format(
        'event store schema %s is versioned (see %s.schema_migrations): code from before '
        'versioned migrations must not open it', TG_TABLE_SCHEMA, TG_TABLE_SCHEMA);
END
$fn$;
CREATE OR REPLACE TRIGGER identity_is_made_once BEFORE INSERT ON {s}.store_identity
    FOR EACH ROW EXECUTE FUNCTION {s}.identity_is_made_once();
"""

MIGRATIONS = numbered(
    Migration(1, "events, streams, checkpoints, ledger and identity tables", _TABLES),
    Migration(2, "appends mark themselves in flight; readers stop below them", _FUNCTIONS),
)

_COLUMNS = (
    "event_id, stream_id, stream_version, position, type, schema_version, occurred_at, "
    "actor, correlation_id, causation_id, data, hash, trace_context"
)


class PostgresEventStore(EventStore):
    """Event store in a PostgreSQL schema (default ``civitas``), through asyncpg."""

    def __init__(self, pool: asyncpg.Pool, schema: str, **options: Any) -> None:
        super().__init__(**options)
        self._pool = pool
        self.schema = schema

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str = "civitas",
        min_size: int = 2,
        max_size: int = 20,
        **options: Any,
    ) -> PostgresEventStore:
        """Connect, apply the schema's missing migrations, and return the store; a schema
        migrated by a newer release is refused (:class:`SchemaTooNew`)."""
        if not _IDENT.fullmatch(schema):
            raise ValueError(f"schema name {schema!r} must be a lower-case SQL identifier")
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, reset=_keep_session
        )
        try:
            await _migrate(pool, schema)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, schema, **options)

    async def _append(
        self,
        stream_id: str,
        category: str,
        expected: ExpectedVersion,
        events: list[PreparedEvent],
    ) -> AppendResult:
        code = _EXPECTED_CODES[expected] if isinstance(expected, StreamState) else expected
        args = _columns(events)
        function = "append_and_seal" if self.global_chain else "append_events"
        async with self._pool.acquire() as conn:
            try:
                row = await conn.fetchrow(
                    f"SELECT * FROM {self.schema}.{function}("
                    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    stream_id,
                    category,
                    code,
                    *args,
                )
            except asyncpg.PostgresError as exc:
                if exc.sqlstate not in ("CV001", "23505"):
                    conn.terminate()  # the session lock may be held: let the server drop it
                    raise
                stored = await self._stored_append(conn, stream_id, events)
                if stored is not None:
                    return stored  # an exact retry of an append that is stored already
                raise _as_store_error(exc, stream_id, expected) from None
            except BaseException:
                conn.terminate()  # cancelled mid-call: the session lock may be held
                raise
        assert row is not None
        return AppendResult(row["last_version"], row["last_position"])

    async def _stored_append(
        self, conn: PoolConnectionProxy[Any], stream_id: str, events: list[PreparedEvent]
    ) -> AppendResult | None:
        ids = [p.event.event_id for p in events]
        found = await conn.fetch(
            f"SELECT event_id, stream_id, stream_version, position FROM {self.schema}.events "
            "WHERE event_id = ANY($1::uuid[]) ORDER BY position",
            ids,
        )
        return idempotent_result(stream_id, [str(i) for i in ids], [tuple(r) for r in found])

    async def _read_stream(
        self, stream_id: str, start: int, backwards: bool, limit: int | None
    ) -> list[RecordedEvent]:
        order = (
            "stream_version <= $2 ORDER BY stream_version DESC"
            if backwards
            else "stream_version >= $2 ORDER BY stream_version"
        )
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM {self.schema}.events WHERE stream_id = $1 AND {order} "
            "LIMIT $3",
            stream_id,
            start,
            limit,
        )
        return [_row_to_event(row) for row in rows]

    async def _read_all(
        self, after: int, limit: int, filter: EventFilter | None
    ) -> list[RecordedEvent]:
        where, params = "", []
        if filter is not None and filter.categories:
            params.append(list(filter.categories))
            where += f" AND category = ANY(${len(params) + 3})"
        if filter is not None and filter.event_types:
            params.append(list(filter.event_types))
            where += f" AND type = ANY(${len(params) + 3})"
        async with self._pool.acquire() as conn:
            horizon = await self._horizon(conn)
            if horizon <= after:
                return []  # nothing new: one round trip for an idle subscriber
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM {self.schema}.events WHERE position > $1 "
                f"AND position <= $3{where} ORDER BY position LIMIT $2",
                after,
                limit,
                horizon,
                *params,
            )
        return [_row_to_event(row) for row in rows]

    async def _horizon(self, conn: PoolConnectionProxy[Any]) -> int:
        """The position below which no append is in flight. Rows up to it must be read
        in a later statement (a newer snapshot), never in the same one."""
        return int(await conn.fetchval(f"SELECT {self.schema}.horizon()"))

    async def _read_raw(self, after: int, limit: int) -> list[RawEvent]:
        rows = await self._pool.fetch(
            "SELECT position, stream_id, stream_version, event_id, type, schema_version, "
            "occurred_at, actor, correlation_id, causation_id, data, hash, category "
            f"FROM {self.schema}.events WHERE position > $1 "  # every committed row: the
            "ORDER BY position LIMIT $2",  # heads, read first, bound what is judged
            after,
            limit,
        )
        return [RawEvent(*row) for row in rows]

    async def _seal(self) -> int:
        sealed = 0
        for _ in range(200):  # an append holding the sealer's turn ends within ms
            n = await self._pool.fetchval(f"SELECT {self.schema}.seal(5000)")
            if n == 0:
                break
            if n < 0:
                await asyncio.sleep(0.01)
            sealed += max(n, 0)
        return sealed

    async def _ledger_head(self) -> int:
        value = await self._pool.fetchval(
            f"SELECT coalesce(max(position), 0) FROM {self.schema}.ledger"
        )
        return int(value)

    async def _read_ledger(self, after: int, limit: int) -> list[LedgerEntry]:
        rows = await self._pool.fetch(
            "SELECT position, stream_id, stream_version, link "
            f"FROM {self.schema}.ledger WHERE position > $1 ORDER BY position LIMIT $2",
            after,
            limit,
        )
        return [LedgerEntry(*row) for row in rows]

    async def _stream_heads(self) -> dict[str, tuple[int, bytes]]:
        rows = await self._pool.fetch(f"SELECT stream_id, version, hash FROM {self.schema}.streams")
        return {row[0]: (row[1], bytes(row[2])) for row in rows}

    async def _head_position(self) -> int:
        async with self._pool.acquire() as conn:
            horizon = await self._horizon(conn)
            value = await conn.fetchval(
                f"SELECT coalesce(max(position), 0) FROM {self.schema}.events WHERE position <= $1",
                horizon,
            )
        return int(value)

    async def _identity(self) -> str:
        value = await self._pool.fetchval(f"SELECT identity FROM {self.schema}.store_identity")
        return str(value)

    async def _load_checkpoint(self, name: str) -> int:
        value = await self._pool.fetchval(
            f"SELECT position FROM {self.schema}.checkpoints WHERE name = $1", name
        )
        return int(value or 0)

    async def _save_checkpoint(self, name: str, position: int) -> None:
        await self._pool.execute(
            f"INSERT INTO {self.schema}.checkpoints (name, position) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            name,
            position,
        )

    async def _close(self) -> None:
        await self._pool.close()


async def _migrate(pool: asyncpg.Pool, schema: str) -> None:
    """Apply the schema's missing migrations in one transaction, one process at a time
    (an advisory lock the releases before versioning took for their DDL too)."""
    params = {
        "s": schema,
        "lock": _LOCK_KEY,
        "seal_lock": _SEAL_LOCK,
        "genesis": GENESIS.hex(),
        "marker": _marker_key(schema),
    }
    for attempt in (1, 2):
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK_KEY + 1})")
                await conn.execute(_MIGRATIONS_TABLE.format(s=schema))
                applied = {
                    r[0]
                    for r in await conn.fetch(f"SELECT version FROM {schema}.schema_migrations")
                }
                for migration in pending(f"event store schema {schema!r}", MIGRATIONS, applied):
                    await conn.execute(migration.step.format(**params))
                    await conn.execute(
                        f"INSERT INTO {schema}.schema_migrations (version, description) "
                        "VALUES ($1, $2)",
                        migration.version,
                        migration.description,
                    )
            return
        except asyncpg.UniqueViolationError:
            # A read-model or vault engine on the same schema (a service's default) made
            # it at this moment under its own lock: the schema is there now; once more.
            if attempt == 2:
                raise


def _marker_key(schema: str) -> int:
    """The first key of a schema's in-flight markers: an int4 stable for a name, written
    into the functions of migration 2; at least 2^24, clear of the project's other
    two-int lock spaces (leases, read models, projections: three-letter tags below it),
    whose long-held locks would otherwise read as appends in flight."""
    floor = 1 << 24
    return floor + zlib.crc32(f"civitas.eventkit.postgres:{schema}".encode()) % (2**31 - floor)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Connections go back to the pool as they are: appends leave no session state
    (a failed one terminates its connection), so asyncpg's reset round trip is saved."""


def _columns(events: list[PreparedEvent]) -> list[list[Any]]:
    return [
        [p.event.event_id for p in events],
        [p.event.type for p in events],
        [p.event.schema_version for p in events],
        [p.occurred_at for p in events],
        [p.event.actor for p in events],
        [p.event.correlation_id for p in events],
        [p.event.causation_id for p in events],
        [p.data_json for p in events],
        [p.digest for p in events],
        [p.trace_column() for p in events],
    ]


def _row_to_event(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        orjson.loads(row[10]),
        row[11],
        trace_context=stored_trace_context(row[12]),
    )


def _as_store_error(
    exc: asyncpg.PostgresError, stream_id: str, expected: ExpectedVersion
) -> Exception:
    state = getattr(exc, "sqlstate", None)
    if state == "CV001":
        message = str(getattr(exc, "message", "none"))
        return ConcurrencyError(stream_id, expected, None if message == "none" else int(message))
    if state == "23505":
        return EventIdConflict(stream_id, "event ids are stored already by another append")
    return exc
