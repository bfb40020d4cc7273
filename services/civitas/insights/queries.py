"""Queries over insights' read models: scorecards, trends, cards, timelines, statements.

Scorecards are computed when asked, from the facts the projections keep, so that
"overdue" is judged by the clock now. A scorecard's figures come from a few
statements on one connection, not one snapshot: while events are being applied
they may differ by the events applied in between. They return plain data, which
insights' views serve to both edges (gRPC, HTTP).
"""

from __future__ import annotations

import asyncio
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from civitas.errors import InvalidInput, NotFound
from civitas.eventkit import Clock
from civitas.funds import postings
from civitas.geography import UnitKind, parse_unit_code

from .projections import (
    ENDED,
    UNDISPATCHED,
    accounts,
    appraisals,
    card_entries,
    case_events,
    cases,
    entries,
    feedback,
    hours,
    members,
    orgs,
    units,
)

T = TypeVar("T")
HOUR = 3600.0


@dataclass
class Scorecard:
    unit_code: str
    unit_name: str
    unit_kind: str
    population: int = 0
    requests_received: int = 0
    requests_open: int = 0
    requests_overdue: int = 0
    requests_resolved: int = 0
    resolution_rate: float = 0.0
    median_hours_to_resolve: float = 0.0
    satisfaction: float = 0.0
    satisfaction_ratings: int = 0
    volunteer_tenths_of_hours: int = 0
    funds_allocated_fen: int = 0
    funds_committed_fen: int = 0
    funds_disbursed_fen: int = 0
    funds_balance_fen: int = 0
    party_members: int = 0
    working_members_reported: int = 0


@dataclass
class MonthPoint:
    month: str
    requests_received: int = 0
    requests_resolved: int = 0
    volunteer_tenths_of_hours: int = 0
    funds_allocated_fen: int = 0
    funds_disbursed_fen: int = 0


@dataclass
class MemberCard:
    member_id: str
    member_number: str
    org_id: str
    org_name: str
    unit_code: str
    working: bool
    reports_to: str
    activities: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    appraisals: list[dict[str, Any]] = field(default_factory=list)
    volunteer_tenths_of_hours: int = 0
    mean_feedback_rating: float = 0.0


@dataclass
class CaseTimeline:
    case_id: str
    community_code: str
    status: str
    entries: list[dict[str, Any]]


@dataclass
class FundStatement:
    account_id: str
    kind: str
    owner_code: str
    name: str
    balance_fen: int
    reserved_fen: int
    entries: list[dict[str, Any]]


def utc(moment: datetime) -> datetime:
    """SQLite hands times back without their zone; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def month_of(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def _in_unit(table: sa.Table, code: str, kind: UnitKind) -> sa.ColumnElement[bool]:
    if kind is UnitKind.DISTRICT:
        return sa.true()
    column = table.c.street_code if kind is UnitKind.STREET else table.c.community_code
    return column == code


def _unit_kind(code: str) -> UnitKind:
    kind, _ = parse_unit_code(code)
    if kind is UnitKind.GRID:
        raise InvalidInput(f"scorecards go down to communities; {code} is a grid")
    return kind


# What a caller may name, checked whole before anything is read: a value with
# whitespace, a control character or a look-alike letter is refused, never trimmed
# or matched to something else.
_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE | re.ASCII
)
_ACCOUNT = re.compile(r"(?P<kind>[a-z]{1,20}):(?P<owner>[A-Z0-9-]{2,20}):[a-z][a-z0-9_.-]{0,40}")


def unit_code_in(code: str, field: str = "unit_code") -> str:
    """A unit code (QH, QH-03, QH-03-07, QH-03-07-G02), in ASCII and nothing around it."""
    if not code:
        raise InvalidInput(f"{field} is required")
    if not code.isascii():  # Unicode digits such as １ are no code's digits
        raise InvalidInput(f"{field} {code[:40]!r} is not a unit code (ASCII letters and digits)")
    parse_unit_code(code)
    return code


def uuid_id_in(value: str, field: str) -> str:
    """An id that is a UUID, written out in full (36 characters); lower case."""
    if not value:
        raise InvalidInput(f"{field} is required")
    if not _UUID.fullmatch(value):
        raise InvalidInput(f"{field} {value[:40]!r} is not an id (a UUID such as 6f1c…-…)")
    return value.lower()


def account_id_in(value: str, field: str = "account_id") -> str:
    """An account id, ``kind:owner:key`` (``fund:QH-01-01:special``)."""
    if not value:
        raise InvalidInput(f"{field} is required")
    shape = _ACCOUNT.fullmatch(value)
    if shape is None:
        raise InvalidInput(
            f"{field} {value[:60]!r} is not an account id (kind:owner:key, "
            "as fund:QH-01-01:special)"
        )
    unit_code_in(shape["owner"], f"{field}'s owner")
    return value


def months_in(months: int) -> int:
    """How many months a trend spans: 1 to 60."""
    if not 1 <= months <= 60:
        raise InvalidInput(f"months is from 1 to 60, not {months}")
    return months


def _counterpart_is(kinds: frozenset[str]) -> sa.ColumnElement[bool]:
    return sa.or_(*(entries.c.counterpart.like(f"{kind}:%") for kind in sorted(kinds)))


FUNDS = accounts.c.kind == "fund"  # what a unit's funds figures count: its funds' accounts
# An allocation and a payment are funds' to say (its event contract, postings.Kind).
ALLOCATED = (entries.c.amount_fen > 0) & _counterpart_is(postings.BUDGETS)
DISBURSED = (entries.c.amount_fen < 0) & _counterpart_is(postings.PAID_OUT_TO)


class InsightsQueries:
    """Reads of the insights read models."""

    def __init__(self, engine: sa.Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    async def scorecard(self, code: str) -> Scorecard:
        kind = _unit_kind(unit_code_in(code))
        return await self._read(lambda conn: self._scorecard(conn, code, kind))

    async def children(self, parent: str) -> list[Scorecard]:
        """The scorecards of a unit's streets or communities, by code."""
        if _unit_kind(unit_code_in(parent, "parent_code")) is UnitKind.COMMUNITY:
            raise InvalidInput(f"scorecards go down to communities; {parent} has only grids")
        return await self._read(lambda conn: self._children(conn, parent))

    async def trend(self, code: str, months: int) -> list[MonthPoint]:
        kind = _unit_kind(unit_code_in(code))
        months = months_in(months)
        return await self._read(lambda conn: self._trend(conn, code, kind, months))

    async def member_card(self, member_id: str) -> MemberCard:
        member_id = uuid_id_in(member_id, "member_id")
        return await self._read(lambda conn: self._member_card(conn, member_id))

    async def case_timeline(self, case_id: str) -> CaseTimeline:
        case_id = uuid_id_in(case_id, "case_id")
        return await self._read(lambda conn: self._case_timeline(conn, case_id))

    async def fund_statement(self, account_id: str) -> FundStatement:
        account_id = account_id_in(account_id)
        return await self._read(lambda conn: self._fund_statement(conn, account_id))

    # -- reads, on a worker thread ------------------------------------------------------

    async def _read(self, work: Callable[[sa.Connection], T]) -> T:
        def run() -> T:
            with self.engine.connect() as conn:
                return work(conn)

        return await asyncio.to_thread(run)

    def _unit(self, conn: sa.Connection, code: str) -> Any:
        row = conn.execute(sa.select(units).where(units.c.code == code)).one_or_none()
        if row is None:
            raise NotFound(f"unit {code} is not known (party_orgs has not registered it)")
        return row

    def _children(self, conn: sa.Connection, parent: str) -> list[Scorecard]:
        self._unit(conn, parent)
        codes = conn.scalars(
            sa.select(units.c.code).where(units.c.parent_code == parent).order_by(units.c.code)
        ).all()
        return [self._scorecard(conn, code, _unit_kind(code)) for code in codes]

    def _scorecard(self, conn: sa.Connection, code: str, kind: UnitKind) -> Scorecard:
        unit = self._unit(conn, code)
        card = Scorecard(code, unit.name, unit.kind, population=unit.population)
        self._add_cases(conn, card, _in_unit(cases, code, kind))
        card.volunteer_tenths_of_hours = int(  # PostgreSQL sums to numeric
            conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(hours.c.tenths_of_hours), 0)).where(
                    _in_unit(hours, code, kind)
                )
            ).scalar_one()
        )
        self._add_funds(conn, card, _in_unit(accounts, code, kind))
        card.party_members = conn.execute(
            sa.select(sa.func.count()).select_from(members).where(_in_unit(members, code, kind))
        ).scalar_one()
        reported = {
            UnitKind.DISTRICT: members.c.reports_to.is_not(None),
            UnitKind.STREET: members.c.reports_to_street == code,
            UnitKind.COMMUNITY: members.c.reports_to == code,
        }[kind]
        card.working_members_reported = conn.execute(
            sa.select(sa.func.count()).select_from(members).where(reported)
        ).scalar_one()
        return card

    def _add_cases(self, conn: sa.Connection, card: Scorecard, scope: Any) -> None:
        now = self.clock.now()
        is_open = cases.c.status.not_in(ENDED)
        late = (cases.c.resolution_due < now) | (
            cases.c.status.in_(UNDISPATCHED) & (cases.c.dispatch_due < now)
        )

        def count(where: Any) -> Any:
            return sa.func.count().filter(where)

        row = conn.execute(
            sa.select(
                sa.func.count(),
                count(is_open),
                count(is_open & late),
                count(cases.c.resolved_at.is_not(None)),
                sa.func.avg(cases.c.satisfaction),
                sa.func.count(cases.c.satisfaction),
            ).where(scope)
        ).one()
        card.requests_received, card.requests_open, card.requests_overdue = row[0], row[1], row[2]
        card.requests_resolved = row[3]
        card.satisfaction, card.satisfaction_ratings = float(row[4] or 0), row[5]
        if card.requests_received:
            card.resolution_rate = card.requests_resolved / card.requests_received
        spans = [
            (utc(resolved) - utc(registered)).total_seconds() / HOUR
            for registered, resolved in conn.execute(
                sa.select(cases.c.registered_at, cases.c.resolved_at).where(
                    scope & cases.c.resolved_at.is_not(None)
                )
            )
        ]
        card.median_hours_to_resolve = statistics.median(spans) if spans else 0.0

    def _add_funds(self, conn: sa.Connection, card: Scorecard, scope: Any) -> None:
        balance, reserved = conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(accounts.c.balance_fen), 0),
                sa.func.coalesce(sa.func.sum(accounts.c.reserved_fen), 0),
            ).where(scope & FUNDS)
        ).one()
        card.funds_balance_fen, card.funds_committed_fen = int(balance), int(reserved)
        fund_entries = entries.join(accounts, entries.c.account_id == accounts.c.account_id)
        allocated, disbursed = conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(entries.c.amount_fen).filter(ALLOCATED), 0),
                sa.func.coalesce(sa.func.sum(entries.c.amount_fen).filter(DISBURSED), 0),
            )
            .select_from(fund_entries)
            .where(scope & FUNDS)
        ).one()
        card.funds_allocated_fen, card.funds_disbursed_fen = int(allocated), -int(disbursed)

    def _trend(
        self, conn: sa.Connection, code: str, kind: UnitKind, months: int
    ) -> list[MonthPoint]:
        self._unit(conn, code)
        now = self.clock.now()
        index = now.year * 12 + now.month - 1
        keys = [f"{(i // 12):04d}-{(i % 12) + 1:02d}" for i in range(index - months + 1, index + 1)]
        points = {key: MonthPoint(key) for key in keys}
        start = datetime(int(keys[0][:4]), int(keys[0][5:]), 1, tzinfo=UTC)

        def bucket(query: Any, add: Callable[[MonthPoint, Any], None]) -> None:
            for moment, value in conn.execute(query):
                point = points.get(month_of(utc(moment)))
                if point is not None:
                    add(point, value)

        def received(p: MonthPoint, _: Any) -> None:
            p.requests_received += 1

        def resolved(p: MonthPoint, _: Any) -> None:
            p.requests_resolved += 1

        def served(p: MonthPoint, tenths: int) -> None:
            p.volunteer_tenths_of_hours += tenths

        def allocated(p: MonthPoint, fen: int) -> None:
            p.funds_allocated_fen += fen

        def disbursed(p: MonthPoint, fen: int) -> None:
            p.funds_disbursed_fen -= fen

        in_cases = _in_unit(cases, code, kind)
        bucket(
            sa.select(cases.c.registered_at, sa.null()).where(
                in_cases & (cases.c.registered_at >= start)
            ),
            received,
        )
        bucket(
            sa.select(cases.c.resolved_at, sa.null()).where(
                in_cases & (cases.c.resolved_at >= start)
            ),
            resolved,
        )
        bucket(
            sa.select(hours.c.served_at, hours.c.tenths_of_hours).where(
                _in_unit(hours, code, kind) & (hours.c.served_at >= start)
            ),
            served,
        )
        fund_entries = entries.join(accounts, entries.c.account_id == accounts.c.account_id)
        in_funds = _in_unit(accounts, code, kind) & FUNDS & (entries.c.booked_at >= start)
        for where, add in ((ALLOCATED, allocated), (DISBURSED, disbursed)):
            bucket(
                sa.select(entries.c.booked_at, entries.c.amount_fen)
                .select_from(fund_entries)
                .where(in_funds & where),
                add,
            )
        return [points[key] for key in keys]

    def _member_card(self, conn: sa.Connection, member_id: str) -> MemberCard:
        member = conn.execute(
            sa.select(members, orgs.c.name.label("org_name"), orgs.c.unit_code)
            .select_from(members.outerjoin(orgs, members.c.org_id == orgs.c.org_id))
            .where(members.c.member_id == member_id)
        ).one_or_none()
        if member is None:
            raise NotFound(f"member {member_id} is not known")
        card = MemberCard(
            member_id,
            member.member_number,
            member.org_id,
            member.org_name or "",
            member.unit_code or "",
            member.working,
            member.reports_to or "",
        )
        mine = card_entries.c.member_id == member_id
        for row in conn.execute(
            sa.select(card_entries).where(mine).order_by(card_entries.c.occurred_at)
        ):
            card.activities.append({**row._asdict(), "occurred_at": utc(row.occurred_at)})
        for row in conn.execute(
            sa.select(feedback)
            .where(feedback.c.member_id == member_id)
            .order_by(feedback.c.recorded_at)
        ):
            card.feedback.append({**row._asdict(), "recorded_at": utc(row.recorded_at)})
        card.appraisals = [
            {"year": row.year, "rating": row.rating}
            for row in conn.execute(
                sa.select(appraisals)
                .where(appraisals.c.member_id == member_id)
                .order_by(appraisals.c.year)
            )
        ]
        card.volunteer_tenths_of_hours = int(
            conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(hours.c.tenths_of_hours), 0)).where(
                    hours.c.member_id == member_id
                )
            ).scalar_one()
        )
        if card.feedback:
            card.mean_feedback_rating = statistics.fmean(f["rating"] for f in card.feedback)
        return card

    def _case_timeline(self, conn: sa.Connection, case_id: str) -> CaseTimeline:
        case = conn.execute(sa.select(cases).where(cases.c.case_id == case_id)).one_or_none()
        if case is None:
            raise NotFound(f"case {case_id} is not known")
        rows = conn.execute(
            sa.select(case_events)
            .where(case_events.c.case_id == case_id)
            .order_by(case_events.c.version)
        )
        return CaseTimeline(
            case_id,
            case.community_code or "",
            case.status,
            [{**row._asdict(), "occurred_at": utc(row.occurred_at)} for row in rows],
        )

    def _fund_statement(self, conn: sa.Connection, account_id: str) -> FundStatement:
        account = conn.execute(
            sa.select(accounts).where(accounts.c.account_id == account_id)
        ).one_or_none()
        if account is None:
            raise NotFound(f"account {account_id} is not known")
        rows = conn.execute(
            sa.select(entries)
            .where(entries.c.account_id == account_id)
            .order_by(entries.c.position)
        )
        return FundStatement(
            account_id,
            account.kind,
            account.owner_code,
            account.name,
            account.balance_fen,
            account.reserved_fen,
            [{**row._asdict(), "booked_at": utc(row.booked_at)} for row in rows],
        )
