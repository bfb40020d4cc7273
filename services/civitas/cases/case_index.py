"""The case index: cases' own read model for lists, overdue counts and supervision."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import structlog
from prometheus_client import Gauge

from civitas.chassis.service import leading
from civitas.errors import InvalidInput
from civitas.eventkit import Clock, Projection, RecordedEvent, handles
from civitas.eventkit.lease import lease_in
from civitas.eventkit.readmodels import create_tables
from civitas.geography import street_of

from .lifecycle import OPEN, STATUS_AFTER, UNDISPATCHED, Status, status_after, values

log = structlog.get_logger("civitas.cases")
OPEN_CASES = Gauge("civitas_cases_open", "Cases registered and not yet resolved or ended")
OVERDUE_CASES = Gauge("civitas_cases_overdue", "Open cases past a dispatch or resolution deadline")
UNDISPATCHED_VALUES = values(UNDISPATCHED)
OPEN_VALUES = values(OPEN)
STATUS_ONLY = sorted(set(STATUS_AFTER) - {"CaseRegistered", "CaseClassified"})
"""Events whose only mark on the index is the status after them."""

metadata = sa.MetaData()
cases = sa.Table(
    "case_index",
    metadata,
    sa.Column("case_id", sa.String(40), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("channel", sa.String(30), nullable=False),
    sa.Column("community_code", sa.String(20), nullable=False, index=True),
    sa.Column("street_code", sa.String(20), nullable=False, index=True),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("dispatch_due", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolution_due", sa.DateTime(timezone=True), nullable=False),
    sa.Column("dispatch_noticed", sa.Boolean, nullable=False, default=False),
    sa.Column("resolution_noticed", sa.Boolean, nullable=False, default=False),
)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _status_after(event: RecordedEvent) -> str:
    """The stored value of the status a case is in after this event (the life cycle's)."""
    status = status_after(event.type, event.data)
    if status is None:
        raise ValueError(f"{event.type} sets no status")
    return status.value


def _same(stored: datetime, new: datetime) -> bool:
    """Compare a stored time (SQLite hands it back without its zone) with a new one."""
    if stored.tzinfo is None:
        stored = stored.replace(tzinfo=new.tzinfo)
    return stored == new


class CaseIndex(Projection):
    """One row per case with what lists and supervision filter on."""

    name = "cases_index"
    tables = (cases,)

    def create(self, conn: sa.Connection) -> None:
        create_tables(conn, metadata)

    def clear(self, conn: sa.Connection) -> None:
        conn.execute(cases.delete())

    @handles("CaseRegistered")
    def on_registered(self, event: RecordedEvent, conn: sa.Connection) -> None:
        data = event.data
        conn.execute(
            cases.insert().values(
                case_id=event.aggregate_id,
                status=_status_after(event),
                channel=data["channel"],
                community_code=data["community_code"],
                street_code=street_of(data["community_code"]) or "",
                registered_at=_when(data["registered_at"]),
                dispatch_due=_when(data["dispatch_due"]),
                resolution_due=_when(data["resolution_due"]),
            )
        )

    @handles("CaseClassified")
    def on_classified(self, event: RecordedEvent, conn: sa.Connection) -> None:
        case = cases.c.case_id == event.aggregate_id
        dispatch_due = _when(event.data["dispatch_due"])
        resolution_due = _when(event.data["resolution_due"])
        before = conn.execute(
            sa.select(cases.c.dispatch_due, cases.c.resolution_due).where(case)
        ).one()
        changes: dict[str, object] = {
            "status": _status_after(event),
            "dispatch_due": dispatch_due,
            "resolution_due": resolution_due,
        }
        if _same(before.dispatch_due, dispatch_due) is False:
            changes["dispatch_noticed"] = False  # a moved deadline gets a notice of its own
        if _same(before.resolution_due, resolution_due) is False:
            changes["resolution_noticed"] = False
        conn.execute(cases.update().where(case).values(changes))

    @handles("CaseReopened")
    def on_reopened(self, event: RecordedEvent, conn: sa.Connection) -> None:
        changes: dict[str, object] = {
            "status": _status_after(event),
            "resolution_noticed": False,
            "resolution_due": _when(event.data["resolution_due"]),
        }
        if event.data.get("dispatch_due"):  # answered on the spot: back to be dispatched
            changes["dispatch_due"] = _when(event.data["dispatch_due"])
            changes["dispatch_noticed"] = False
        conn.execute(cases.update().where(cases.c.case_id == event.aggregate_id).values(changes))

    @handles("SupervisionNoticeIssued")
    def on_notice(self, event: RecordedEvent, conn: sa.Connection) -> None:
        column = f"{event.data['deadline']}_noticed"
        conn.execute(
            cases.update().where(cases.c.case_id == event.aggregate_id).values({column: True})
        )

    @handles(*STATUS_ONLY)
    def on_status(self, event: RecordedEvent, conn: sa.Connection) -> None:
        conn.execute(
            cases.update()
            .where(cases.c.case_id == event.aggregate_id)
            .values(status=_status_after(event))
        )


def overdue_clause(now: datetime) -> sa.ColumnElement[bool]:
    """Open and past the dispatch deadline (while undispatched) or the resolution one."""
    return sa.and_(
        cases.c.status.in_(OPEN_VALUES),
        sa.or_(
            sa.and_(cases.c.status.in_(UNDISPATCHED_VALUES), cases.c.dispatch_due < now),
            cases.c.resolution_due < now,
        ),
    )


@dataclass(frozen=True, slots=True)
class CaseFilter:
    community_code: str | None = None
    street_code: str | None = None
    status: Status | None = None
    overdue_only: bool = False
    channel: str | None = None
    registered_from: datetime | None = None
    registered_to: datetime | None = None


class PageTokens:
    """ListCases' page tokens: the last case of a page (its registration time and id),
    signed with a key of the service's and bound to the filter the page was listed
    with. A token the service did not give out, or one given for another filter, is
    refused: the caller starts again from the first page."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self, where: CaseFilter, at: datetime, case_id: str) -> str:
        payload = _b64(json.dumps([at.isoformat(), case_id]).encode())
        return f"{payload}.{self._signature(where, payload)}"

    def read(self, where: CaseFilter, token: str) -> tuple[datetime, str]:
        """The position a token holds; :class:`InvalidInput` for any other token."""
        payload, _, signature = token.rpartition(".")
        if not hmac.compare_digest(signature.encode(), self._signature(where, payload).encode()):
            raise InvalidInput("page_token is not one this service gave out for this filter")
        try:  # signed by this service, so well formed; checked all the same
            at, case_id = json.loads(_unb64(payload))
            return datetime.fromisoformat(at), str(case_id)
        except (ValueError, TypeError):
            raise InvalidInput("page_token is not one this service gave out") from None

    def _signature(self, where: CaseFilter, payload: str) -> str:
        bound = json.dumps([dataclasses.asdict(where), payload], default=str, sort_keys=True)
        return _b64(hmac.new(self._key, bound.encode(), hashlib.sha256).digest()[:16])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput("page_token is not one this service gave out") from None


class CaseQueries:
    """Reads of the case index (run on a worker thread by the caller)."""

    def __init__(self, engine: sa.Engine, tokens: PageTokens) -> None:
        self.engine = engine
        self.tokens = tokens

    def page(
        self, where: CaseFilter, now: datetime, size: int, token: str | None
    ) -> tuple[list[str], str | None]:
        """Case ids, newest first, and the token of the next page (None at the end)."""
        query = (
            sa.select(cases.c.case_id, cases.c.registered_at)
            .order_by(cases.c.registered_at.desc(), cases.c.case_id.desc())
            .limit(size + 1)
        )
        for clause in self._clauses(where, now):
            query = query.where(clause)
        if token:
            at, case_id = self.tokens.read(where, token)
            query = query.where(
                sa.or_(
                    cases.c.registered_at < at,
                    sa.and_(cases.c.registered_at == at, cases.c.case_id < case_id),
                )
            )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        more = len(rows) > size
        rows = rows[:size]
        last = rows[-1] if more else None
        next_token = self.tokens.issue(where, last.registered_at, last.case_id) if last else None
        return [row.case_id for row in rows], next_token

    def needing_notice(self, now: datetime, limit: int = 1000) -> list[str]:
        """Overdue cases with a breached deadline that has no notice yet."""
        late_dispatch = sa.and_(
            cases.c.status.in_(UNDISPATCHED_VALUES),
            cases.c.dispatch_due < now,
            cases.c.dispatch_noticed.is_(False),
        )
        late_resolution = sa.and_(
            cases.c.status.in_(OPEN_VALUES),
            cases.c.resolution_due < now,
            cases.c.resolution_noticed.is_(False),
        )
        query = sa.select(cases.c.case_id).where(sa.or_(late_dispatch, late_resolution))
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query.limit(limit))]

    def counts(self, now: datetime) -> tuple[int, int]:
        with self.engine.connect() as conn:
            open_count = conn.scalar(
                sa.select(sa.func.count()).where(cases.c.status.in_(OPEN_VALUES))
            )
            overdue = conn.scalar(sa.select(sa.func.count()).where(overdue_clause(now)))
        return int(open_count or 0), int(overdue or 0)

    @staticmethod
    def _clauses(where: CaseFilter, now: datetime) -> list[sa.ColumnElement[bool]]:
        clauses: list[sa.ColumnElement[bool]] = []
        if where.community_code:
            clauses.append(cases.c.community_code == where.community_code)
        if where.street_code:
            clauses.append(cases.c.street_code == where.street_code)
        if where.status:
            clauses.append(cases.c.status == where.status.value)
        if where.channel:
            clauses.append(cases.c.channel == where.channel)
        if where.registered_from:
            clauses.append(cases.c.registered_at >= where.registered_from)
        if where.registered_to:
            clauses.append(cases.c.registered_at < where.registered_to)
        if where.overdue_only:
            clauses.append(overdue_clause(now))
        return clauses


@contextlib.asynccontextmanager
async def supervising(
    supervise: Callable[[str], Awaitable[int]],
    queries: CaseQueries,
    clock: Clock,
    every_seconds: float,
) -> AsyncIterator[None]:
    """Run the supervisor while inside, on one replica at a time (under the lease
    ``cases-supervisor`` in the case index's database): notices for breached
    deadlines, and the gauges (set by the replica that supervises)."""

    async def loop() -> None:
        while True:
            now = clock.now()
            for case_id in await asyncio.to_thread(queries.needing_notice, now):
                try:
                    await supervise(case_id)
                except Exception:  # one bad case must not stop supervision of the others
                    log.exception("supervision failed", case_id=case_id)
            open_count, overdue = await asyncio.to_thread(queries.counts, now)
            OPEN_CASES.set(open_count)
            OVERDUE_CASES.set(overdue)
            await asyncio.sleep(every_seconds)

    async with leading(await lease_in(queries.engine, "cases-supervisor"), loop):
        yield
