"""Personal data, encrypted with one key per person (crypto-shredding).

Events and read models hold only ciphertext of a person's name, phone and the
like, sealed with AES-GCM under that person's own key, the person id bound in as
associated data. Forgetting a person deletes their key: every copy of the
ciphertext, in any store, read model or Kafka topic, becomes noise, while the
events' hashes (which cover the ciphertext) still verify.

A deleted key must not survive in the vault's own files either: SQLite vaults run
with ``secure_delete`` and have their WAL checkpointed and truncated after each
forget; PostgreSQL vaults have their two small tables rewritten (``VACUUM FULL``),
which leaves the dead rows in no relation file.

A forgotten person's id is kept as a tombstone (``personal_forgotten``: the random id
alone, no key, no personal data), and the vault refuses ever to make that id a key
again (:class:`PersonForgotten`): a seal racing a forget, or a caller naming a
forgotten id, cannot bring the person back under a new key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from civitas.errors import RuleViolation, Unavailable

from .domain import UNSEALED, SealedName
from .ids import new_uuid
from .readmodels import in_own_transaction

PREFIX = "pd1"
ERASED = "[erased]"

_tables = sa.MetaData()
_keys = sa.Table(
    "personal_keys",
    _tables,
    sa.Column("person_id", sa.String(200), primary_key=True),
    sa.Column("key", sa.LargeBinary, nullable=False),
)
# Natural key (a phone number) → person id, through a keyed hash: a plain hash of a
# phone number could be reversed by trying every number, which would undo erasure.
_index = sa.Table(
    "personal_index",
    _tables,
    sa.Column("lookup", sa.LargeBinary, primary_key=True),
    sa.Column("person_id", sa.String(200), nullable=False, index=True),
)
# Tombstones: the ids of forgotten people, which never get a key again. An id is random
# (or a member's random UUID): it says nothing about the person.
_forgotten = sa.Table(
    "personal_forgotten",
    _tables,
    sa.Column("person_id", sa.String(200), primary_key=True),
)
_INDEX_KEY_ID = "__index_key__"
_PERSON_ID = re.compile(
    r"(?:[a-z_]{1,20}-)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII
)


SCRUB_ATTEMPTS = 3
SCRUB_WAIT_MS = 2000


class ErasureIncomplete(Unavailable):
    """The key is deleted, but the vault's files could not yet be rid of its bytes (a
    reader kept the SQLite WAL open, or a lock kept PostgreSQL from rewriting the
    table). Asking to forget the person again finishes the work."""


class PersonForgotten(RuleViolation):
    """The person was forgotten: nothing is sealed under their id again."""

    def __init__(self, person_id: str, detail: str = "has been forgotten") -> None:
        super().__init__(f"person {person_id} {detail}: nothing was sealed for them")
        self.person_id = person_id


class VaultCannotErase(RuntimeError):
    """The database under the vault cannot overwrite what it deletes (SQLite built
    without ``secure_delete``): a forgotten key would stay in its free pages."""


def is_person_id(text: str) -> bool:
    """Whether ``text`` is a person's id as the vaults write it, whole: a member's id (a
    UUID), or the kind of person and a UUID a vault drew (``resident-…``,
    ``volunteer-…``, ``holder-…``, ``staff-…``, ``mediator-…``), in lower case."""
    return _PERSON_ID.fullmatch(text) is not None


class PersonalDataVault:
    """Keeps one data key per person in a small table of its own database."""

    def __init__(
        self, engine: sa.Engine, *, after_read: Callable[[str], None] | None = None
    ) -> None:
        """``after_read`` is called on the loading thread once a key has been read and
        before it may be cached (tests pause a load there to race it with a forget)."""
        self.engine = engine
        self._cache: dict[str, bytes] = {}
        self._forgets: dict[str, int] = {}  # per person: how many forgets have finished
        self._lock = threading.Lock()
        self._after_read = after_read
        self._index_key: bytes | None = None
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _secure_delete)

    async def setup(self) -> None:
        """Create the tables if they are missing, and the secret of the lookup index.
        Refuses (:class:`VaultCannotErase`) a SQLite that cannot securely delete."""
        await asyncio.to_thread(in_own_transaction, self.engine, _tables)
        self._index_key = await self._key(_INDEX_KEY_ID, create=True)

    async def person_for(self, kind: str, natural_key: str) -> str:
        """The id of the person a natural key names (made on first use; random, so it
        says nothing about the key)."""
        lookup = hmac.new(
            self._index_key or b"", f"{kind}:{natural_key}".encode(), hashlib.sha256
        ).digest()

        def find_or_make() -> str:
            query = sa.select(_index.c.person_id).where(_index.c.lookup == lookup)
            try:
                with self.engine.begin() as conn:
                    found = conn.scalar(query)
                    if found is not None:
                        return str(found)
                    person_id = f"{kind}-{new_uuid()}"
                    conn.execute(_index.insert().values(lookup=lookup, person_id=person_id))
                    return person_id
            except sa.exc.IntegrityError:  # made by a concurrent call meanwhile: use it
                with self.engine.connect() as conn:
                    return str(conn.scalar(query))

        return await asyncio.to_thread(find_or_make)

    async def seal(self, person_id: str, plaintext: str) -> str:
        """Ciphertext of ``plaintext`` under the person's key (made on first use;
        :class:`PersonForgotten` for a person forgotten, whose id gets no key again)."""
        key = await self._key(person_id, create=True)
        assert key is not None
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), person_id.encode())
        return f"{PREFIX}:{_b64(nonce)}:{_b64(sealed)}"

    async def open(self, person_id: str, ciphertext: str) -> str | None:
        """The plaintext, or None when the person has been forgotten, or when the text
        was not sealed under the key the vault holds for them (a key an older version
        made again after a forget: what the forgotten key sealed stays unreadable)."""
        key = await self._key(person_id, create=False)
        if key is None:
            return None
        prefix, nonce, sealed = ciphertext.split(":")
        if prefix != PREFIX:
            raise ValueError(f"unknown personal data format {prefix!r}")
        try:
            opened = AESGCM(key).decrypt(_unb64(nonce), _unb64(sealed), person_id.encode())
        except InvalidTag:
            return None
        return opened.decode()

    async def show(self, person_id: str, ciphertext: str) -> str:
        """The plaintext for display: ``[erased]`` once the person is forgotten."""
        return await self.open(person_id, ciphertext) or ERASED

    async def show_name(self, name: SealedName | None) -> str:
        """A sealed name for display (``[erased]`` once forgotten; "" for no name)."""
        if name is None:
            return ""
        if name.ciphertext is None:  # written before names were sealed: plaintext, whose
            # person (a member) may have been forgotten since
            if name.person_id != UNSEALED and not await self.holds_key(name.person_id):
                return ERASED
            return name.plaintext or ""
        return await self.show(name.person_id, name.ciphertext)

    async def holds_key(self, person_id: str) -> bool:
        """True while the vault holds the person's key (not forgotten, not unknown)."""
        return await self._key(person_id, create=False) is not None

    async def seal_name(self, person_id: str, name: str) -> SealedName:
        """``name`` sealed under the person's key, as the domain holds names."""
        return SealedName(person_id, await self.seal(person_id, name))

    async def forget(self, person_id: str) -> bool:
        """Delete the person's key and keep their id as a tombstone (no key is made for
        it again); True when there was a key. Then rid the vault's files of the deleted
        bytes (:class:`ErasureIncomplete` when that cannot be done yet; the key is
        deleted all the same, and asking again finishes it). The vault's own keys (ids
        beginning with ``__``) are not people's and are refused."""
        if person_id.startswith("__"):
            raise ValueError(f"{person_id!r} is not a person's id")

        def delete() -> int:
            with self.engine.begin() as conn:
                self._lock_person(conn, person_id)
                conn.execute(_index.delete().where(_index.c.person_id == person_id))
                deleted = conn.execute(_keys.delete().where(_keys.c.person_id == person_id))
                # read after the delete, which made this the one writer (SQLite)
                if conn.scalar(_tombstone(person_id)) is None:
                    conn.execute(_forgotten.insert().values(person_id=person_id))
                return deleted.rowcount

        deleted = await asyncio.to_thread(delete)
        with self._lock:  # a load that began before this point may not cache what it read
            self._forgets[person_id] = self._forgets.get(person_id, 0) + 1
            self._cache.pop(person_id, None)
        await asyncio.to_thread(self._scrub)
        return deleted > 0

    async def _key(self, person_id: str, *, create: bool) -> bytes | None:
        with self._lock:
            if person_id in self._cache:
                return self._cache[person_id]
            forgets = self._forgets.get(person_id, 0)
        key = await asyncio.to_thread(self._load_or_create, person_id, create)
        with self._lock:
            if self._forgets.get(person_id, 0) != forgets:  # forgotten while loading
                if create:
                    raise PersonForgotten(person_id, "was forgotten meanwhile")
                return None
            if key is not None:
                self._cache[person_id] = key
        return key

    def _load_or_create(self, person_id: str, create: bool) -> bytes | None:
        """The person's key; with ``create``, one made when there is none, unless the
        id is a tombstone (:class:`PersonForgotten`). A key is inserted before the
        tombstones are read, in one transaction that a forget of the same person
        cannot interleave with (SQLite: one writer at a time; PostgreSQL: a lock on
        the person id), so a forget is either seen, or it deletes the new key."""
        query = sa.select(_keys.c.key).where(_keys.c.person_id == person_id)
        try:
            with self.engine.begin() as conn:
                found = conn.scalar(query)
                if found is None and create:
                    self._lock_person(conn, person_id)
                    found = AESGCM.generate_key(bit_length=256)
                    conn.execute(_keys.insert().values(person_id=person_id, key=found))
                    if conn.scalar(_tombstone(person_id)) is not None:
                        raise PersonForgotten(person_id)  # rolls the insert back
        except sa.exc.IntegrityError:  # a concurrent call made the key first: use theirs
            with self.engine.connect() as conn:
                found = conn.scalar(query)
        if self._after_read is not None:
            self._after_read(person_id)
        return found

    def _lock_person(self, conn: sa.Connection, person_id: str) -> None:
        """On PostgreSQL, hold a lock on the person id until the transaction ends, so
        a key's creation and the person's forget run one after the other (SQLite lets
        one writer at a time in, which does the same)."""
        if self.engine.dialect.name == "postgresql":
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:person, 0))"),
                {"person": f"personal-key:{person_id}"},
            )

    def _scrub(self) -> None:
        """Leave deleted rows' bytes in no file of the vault: on SQLite (whose deletes
        overwrite in place) checkpoint the WAL and truncate it, on PostgreSQL rewrite
        both tables. A reader or lock in the way is waited for, a few times."""
        for attempt in range(SCRUB_ATTEMPTS):
            if attempt:
                self.engine.dispose()  # close idle pooled connections, then try again
                time.sleep(0.05 * attempt)
            if self._scrubbed():
                return
        raise ErasureIncomplete(
            "the key is deleted, but the vault's files still hold its bytes (a reader "
            "or a lock was in the way): ask to forget the person again"
        )

    def _scrubbed(self) -> bool:
        wait_ms = SCRUB_WAIT_MS
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={wait_ms}")
                busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
                conn.exec_driver_sql("PRAGMA busy_timeout=30000")
            return bool(busy == 0)
        try:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f"SET lock_timeout = {wait_ms}")
                conn.exec_driver_sql(f"VACUUM FULL {_keys.name}, {_index.name}")
                conn.exec_driver_sql("RESET lock_timeout")
        except sa.exc.OperationalError:  # the lock was not granted in time
            return False
        return True


def _tombstone(person_id: str) -> sa.Select[tuple[str]]:
    return sa.select(_forgotten.c.person_id).where(_forgotten.c.person_id == person_id)


def _secure_delete(dbapi_conn: Any, _record: object) -> None:
    """Every connection of a SQLite vault overwrites what it deletes, or is refused."""
    cursor = dbapi_conn.cursor()
    try:
        took = cursor.execute("PRAGMA secure_delete=ON").fetchone()
    finally:
        cursor.close()
    if not took or took[0] != 1:
        raise VaultCannotErase(
            "this SQLite does not take PRAGMA secure_delete=ON, so a forgotten key would "
            "stay in the vault's free pages: use a SQLite built with secure delete"
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
