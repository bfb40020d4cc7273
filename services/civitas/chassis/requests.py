"""Request ids (AIP-155): a retried command returns its first result, never a second one.

Every command's request may carry ``request_id``: a UUID the client chose. The chassis
client sets one on every command it sends, and grpcio resends the same bytes when it
retries, so a retry carries the same id. Per request id, the service keeps a digest
of the whole request (the method, the caller's subject, roles and scope, and every
other field) and the ids of what the reply named. Then:

- a request id not seen before runs the command; once the command has succeeded, the
  log keeps the id (a command that failed is not kept, and its retry runs again);
- the same id with the same digest does not run the command again: the reply is built
  from what the first one named, as it is now (AIP-155's "stale success response");
- the same id with any other digest (another caller, method, account, amount, memo…)
  is refused with ALREADY_EXISTS, and nothing runs.

Requests with one id take turns, across every replica of the service: before the
command runs, its id is **claimed** in ``request_claims`` (a row with the digest and a
time it holds until, :data:`CLAIM_SECONDS` ahead), in the read-model database every
replica shares. Requests with one id take turns in a process as well, so that only
copies arriving at other replicas meet a claim. A copy that finds the id claimed
waits for the holder (polling, up to ``wait_seconds``), then replies as the holder's
row says; still claimed then, it is refused with UNAVAILABLE (nothing done; the
chassis client retries it). A claim whose time passed is taken over (one conditional
UPDATE wins): its holder died or lost the database. The bound (30 s) is far beyond a
command's run (milliseconds; a call's deadline is seconds), so a live holder is not
overtaken; should one still be, its command's own effects are versioned appends, and
one that makes something under :func:`id_for` makes it once. The finished command's
log row and the end of its claim are one write; a failed command's claim is deleted,
so that its retry runs again. Claims made at once share a transaction, as finished rows
do (group commit, :class:`Together`). Claims need no change of ``request_log`` (a replica of
the release before, during a rolling update, still reads only finished rows).

Commands that make something under a random id take the id from the request id
instead (:func:`id_for`), so that a crash between the command and the log's write
still leaves one thing, found on the retry. For the same reason the events a command
appends take ids derived from its request id (:mod:`civitas.eventkit.requested`): a
retry that runs the command again, after its first run's replica died before the log's
write, appends the same ids, and the store answers with the events it holds instead of
storing them twice; a change the aggregate's rules now refuse because the first run made
it is answered as done.
The log lives in the service's read-model database, a row per request id, kept for
good (a row is about 200 bytes). The digest it keeps is keyed (HMAC-SHA256 with a key
derived from the service's auth secret, which is not in the database): a request
holds free text (a case's note or description), and a plain hash of it would let
whoever reads the database confirm a guess of that text, also after its person was
forgotten. Rows an older version wrote with a plain digest are keyed in place when
the log is set up, so their retries still replay. Rows waiting to be written are committed together
(group commit): a reply waits for its row to be durable, but concurrent commands
share one transaction and one fsync.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

import sqlalchemy as sa
import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from sqlalchemy.dialects import postgresql, sqlite

from civitas.errors import AlreadyExists, InvalidInput, Unavailable
from civitas.eventkit import KeyedLocks, natural_id, requested
from civitas.eventkit.ids import parse_uuid
from civitas.eventkit.readmodels import in_own_transaction

from .auth import Principal

log = structlog.get_logger("civitas.requests")

REQUEST_ID = "request_id"
CLAIM_SECONDS = 30.0
"""How long a claim holds without its holder finishing (see the module's docstring)."""
WAIT_SECONDS = 5.0
"""How long a copy of a request waits for another replica's run before UNAVAILABLE."""
PENDING: Literal["pending"] = "pending"
Item = TypeVar("Item")
Outcome = TypeVar("Outcome")
KEYED = b"\x01"
"""The first byte of a keyed digest (33 bytes); a plain one (an older version's) is the
32 bytes of its SHA-256 alone."""

_tables = sa.MetaData()
request_log = sa.Table(
    "request_log",
    _tables,
    sa.Column("service", sa.String(40), primary_key=True),
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("digest", sa.LargeBinary, nullable=False),
    sa.Column("named", sa.String(400), nullable=False),  # JSON list of the reply's ids
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)
request_claims = sa.Table(
    "request_claims",
    _tables,
    sa.Column("service", sa.String(40), primary_key=True),
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("digest", sa.LargeBinary, nullable=False),
    sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=False),
)


class Replaying(Protocol):
    """A servicer whose commands take request ids: it renders, as it is now, the thing a
    reply named (by the reply field's message type and the thing's id)."""

    async def current(self, kind: str, object_id: str) -> Message: ...


def id_for(kind: str, request_id: str | None) -> str | None:
    """The id of the thing a command makes, derived from its request id (None without
    one: then the command draws a random id)."""
    return str(natural_id(f"{kind}-request", request_id)) if request_id else None


def request_id_of(request: Message) -> str | None:
    """The request id a command's request carries, checked: a UUID, or None."""
    if REQUEST_ID not in request.DESCRIPTOR.fields_by_name:
        return None
    value = getattr(request, REQUEST_ID)
    if not value:
        return None
    parsed = parse_uuid(value)
    if parsed is None:
        raise InvalidInput(f"request_id {value!r} is not a UUID")
    return parsed


def digest_of(method: str, principal: Principal, request: Message) -> bytes:
    """What binds a request id to its request: method, caller and every other field."""
    body = type(request)()
    body.CopyFrom(request)
    body.ClearField(REQUEST_ID)
    caller = json.dumps(
        [principal.subject, sorted(principal.roles), sorted(principal.scope)],
        ensure_ascii=False,
    )
    hashed = hashlib.sha256()
    for part in (method.encode(), caller.encode(), body.SerializeToString(deterministic=True)):
        hashed.update(len(part).to_bytes(8, "big") + part)
    return hashed.digest()


def digest_key(secret: str, service: str) -> bytes:
    """The key of a service's request digests, derived from its auth secret (HKDF)."""
    info = f"civitas request log digest v1 {service}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret.encode())


def keyed(key: bytes, plain: bytes) -> bytes:
    """What the log keeps of a request's plain digest: its HMAC under ``key``, marked."""
    return KEYED + hmac.new(key, plain, hashlib.sha256).digest()


class RequestLog:
    """The request ids one service has answered, in its read-model database."""

    def __init__(
        self,
        engine: sa.Engine,
        service: str,
        secret: str,
        *,
        claim_seconds: float = CLAIM_SECONDS,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        """``secret`` is the service's auth secret: its digests are keyed with a key
        derived from it (another secret makes every kept request id refuse its retry
        with ALREADY_EXISTS)."""
        self.engine = engine
        self.service = service
        self.claim = timedelta(seconds=claim_seconds)
        self.wait_seconds = wait_seconds
        self._key = digest_key(secret, service)
        self._turns = KeyedLocks()
        self._claims = Together(self._claim_all)
        self._writes = Together(self._insert)

    async def setup(self) -> None:
        """Create the table if missing, and key the plain digests an older version
        kept (once: a keyed digest is not keyed again)."""
        await asyncio.to_thread(in_own_transaction, self.engine, _tables)
        await asyncio.to_thread(self._key_plain_digests)

    def _key_plain_digests(self) -> None:
        plain = request_log.c.service == self.service, sa.func.length(request_log.c.digest) == 32
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(request_log.c.request_id, request_log.c.digest).where(*plain)
            ).all()
            for request_id, digest in rows:
                conn.execute(
                    request_log.update()
                    .where(
                        request_log.c.service == self.service,
                        request_log.c.request_id == request_id,
                    )
                    .values(digest=keyed(self._key, bytes(digest)))
                )

    async def once(
        self,
        path: str,
        principal: Principal,
        request: Message,
        run: Callable[[], Awaitable[Message]],
        servicer: object,
    ) -> Message:
        """Run a command once per request id (see the module's docstring)."""
        request_id = request_id_of(request)
        if request_id is None:
            return await run()
        digest = keyed(self._key, digest_of(path, principal, request))
        async with self._turns.hold(request_id):
            named = await self._claim(request_id, digest)
            if named is not None:
                return await _reply_again(servicer, _method(path), named)
            try:
                with requested.serving(request_id):
                    reply = await run()
            except BaseException:  # failed or cancelled: its retry runs again
                await asyncio.shield(asyncio.to_thread(self._release, request_id))
                raise
            await self._remember(request_id, digest, _named_by(reply))
            return reply

    async def _claim(self, request_id: str, digest: bytes) -> list[str] | None:
        """Claim ``request_id`` (None), or what its finished run named; waits while
        another replica runs it."""
        made, kept = await self._claims.run((request_id, digest))
        if kept is not None:
            _check_same(request_id, bytes(kept.digest), digest)
            return list(json.loads(kept.named))
        if made:
            return None
        pause, waited = 0.0, 0.0
        while True:
            await asyncio.sleep(pause)
            waited += pause
            pause = min(max(pause * 2, 0.02), 0.25)
            found = await asyncio.to_thread(self._try_claim, request_id, digest)
            if found != PENDING:
                return found
            if waited >= self.wait_seconds:
                raise Unavailable(f"request {request_id} is being run by another replica; retry")

    def _try_claim(self, request_id: str, digest: bytes) -> list[str] | Literal["pending"] | None:
        """One try, in one transaction: what the log kept (the claim made is then rolled
        back), None when claimed now (new, or taken over after its time), or PENDING."""
        now = datetime.now(UTC)
        mine = {"service": self.service, "request_id": request_id}
        key = (request_claims.c.service == self.service, request_claims.c.request_id == request_id)
        with self.engine.connect() as conn, conn.begin() as transaction:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            made = conn.execute(
                dialect.insert(request_claims)
                .values(**mine, digest=digest, claimed_until=now + self.claim)
                .on_conflict_do_nothing()
                .returning(request_claims.c.request_id)
            ).first()
            named = self._recall(conn, request_id, digest)
            if named is not None:
                transaction.rollback()
                return named
            if made is not None:
                return None
            held = conn.scalar(sa.select(request_claims.c.digest).where(*key))
            if held is None:  # released meanwhile (its command failed): try again
                return PENDING
            _check_same(request_id, bytes(held), digest)
            taken = conn.execute(
                request_claims.update()
                .where(*key, request_claims.c.claimed_until < now)
                .values(claimed_until=now + self.claim)
                .returning(request_claims.c.request_id)
            ).first()
            if taken is None:
                return PENDING
            log.warning("request claim taken over after its time", request_id=request_id)
            return None

    def _claim_all(self, claims: list[tuple[str, bytes]]) -> list[tuple[bool, Any]]:
        """Claim request ids in one transaction: for each, whether it was claimed now, and
        its finished row if it has one (whose claim, made in vain, is deleted at once)."""
        until = datetime.now(UTC) + self.claim
        rows = [
            {"service": self.service, "request_id": i, "digest": digest, "claimed_until": until}
            for i, digest in claims
        ]
        ids = [row["request_id"] for row in rows]
        with self.engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            made = set(
                conn.scalars(
                    dialect.insert(request_claims)
                    .on_conflict_do_nothing()
                    .returning(request_claims.c.request_id),
                    rows,
                )
            )
            kept = {
                row.request_id: row
                for row in conn.execute(
                    sa.select(
                        request_log.c.request_id, request_log.c.digest, request_log.c.named
                    ).where(
                        request_log.c.service == self.service, request_log.c.request_id.in_(ids)
                    )
                )
            }
            if made & kept.keys():
                self._delete_claims(conn, made & kept.keys())
        return [(request_id in made, kept.get(request_id)) for request_id in ids]

    def _recall(self, conn: sa.Connection, request_id: str, digest: bytes) -> list[str] | None:
        row = conn.execute(
            sa.select(request_log.c.digest, request_log.c.named).where(
                request_log.c.service == self.service,
                request_log.c.request_id == request_id,
            )
        ).first()
        if row is None:
            return None
        _check_same(request_id, bytes(row.digest), digest)
        return list(json.loads(row.named))

    def _release(self, request_id: str) -> None:
        with self.engine.begin() as conn:
            self._delete_claims(conn, {request_id})

    def _delete_claims(self, conn: sa.Connection, request_ids: Collection[str]) -> None:
        conn.execute(
            request_claims.delete().where(
                request_claims.c.service == self.service,
                request_claims.c.request_id.in_(list(request_ids)),
            )
        )

    async def _remember(self, request_id: str, digest: bytes, named: list[str]) -> None:
        """Keep the request id; returns once its row is committed (with whatever other
        rows are waiting: one transaction for all of them)."""
        row = {
            "service": self.service,
            "request_id": request_id,
            "digest": digest,
            "named": json.dumps(named),
            "recorded_at": datetime.now(UTC),
        }
        await self._writes.run(row)

    def _insert(self, rows: list[dict[str, Any]]) -> list[None]:
        with self.engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            # A row there already: another process answered the same id meanwhile.
            conn.execute(dialect.insert(request_log).on_conflict_do_nothing(), rows)
            self._delete_claims(conn, [row["request_id"] for row in rows])
        return [None] * len(rows)


class Together(Generic[Item, Outcome]):
    """Group commit: items submitted while a batch is being written go together in the
    next one, one transaction (and one fsync) for all of them. ``write`` (blocking, run
    on a thread) returns each item's outcome, in order; when it fails, every item of its
    batch hears of it."""

    def __init__(self, write: Callable[[list[Item]], list[Outcome]]) -> None:
        self.write = write
        self._waiting: list[tuple[Item, asyncio.Future[Outcome]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def run(self, item: Item) -> Outcome:
        """``item``'s outcome, once its batch is written."""
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        return await asyncio.shield(done)

    async def _write_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                outcomes = await asyncio.to_thread(self.write, [item for item, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if not done.done():
                    done.set_result(outcome)


def _check_same(request_id: str, kept: bytes, digest: bytes) -> None:
    """Refuse a request whose id was used for another request."""
    if not hmac.compare_digest(kept, digest):
        raise AlreadyExists(
            f"request_id {request_id} was used for a different request; "
            "nothing was done (use a new request_id for a new request)"
        )


def _method(path: str) -> MethodDescriptor:
    service, _, name = path.lstrip("/").partition("/")
    return descriptor_pool.Default().FindMethodByName(f"{service}.{name}")


def _named_by(reply: Message) -> list[str]:
    """The ids of what a reply names: the first field of each message field it holds."""
    return [
        str(getattr(value, value.DESCRIPTOR.fields[0].name))
        for field, value in reply.ListFields()
        if field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated
    ]


async def _reply_again(servicer: object, method: MethodDescriptor, named: list[str]) -> Message:
    """The reply to a repeated request: what the first one named, as it is now."""
    custom = getattr(servicer, f"replay_{method.name}", None)
    if custom is not None:
        return await custom(named)  # type: ignore[no-any-return]
    field = method.output_type.fields[0]
    kind = field.message_type.full_name if field.message_type else ""
    current = await cast(Replaying, servicer).current(kind, named[0])
    return GetMessageClass(method.output_type)(**{field.name: current})
