"""insights' read models, one projection per service whose events it reads.

Each projection keeps facts close to the events (a row per case, activity,
account, member), with the unit codes that scorecards group by; scorecards,
trends and cards are computed from them when asked. Nothing personal is kept in the
clear: names and phones stay in their own services, and the case timeline keeps a
case's sealed text (address below the building, description, notes, mediation
records) as the ciphertext it is stored as.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from civitas.cases import lifecycle
from civitas.eventkit import EventFilter, Projection, RecordedEvent, handles
from civitas.eventkit.projection import insert_many
from civitas.eventkit.readmodels import create_tables
from civitas.funds import postings
from civitas.geography import community_of, street_of
from civitas.sealing import kept_for_timeline

metadata = sa.MetaData()
TS = sa.DateTime(timezone=True)


def _units(code: str | None) -> dict[str, str | None]:
    """The community and street a unit code lies in, for grouping."""
    if not code:
        return {"community_code": None, "street_code": None}
    return {"community_code": community_of(code), "street_code": street_of(code)}


def _unit_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("community_code", sa.String(20), index=True),
        sa.Column("street_code", sa.String(20), index=True),
    ]


def _id_of(event: RecordedEvent) -> str:
    return event.aggregate_id


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


class FactsProjection(Projection):
    """A projection whose tables are all its own: created and cleared as a set."""

    def create(self, conn: sa.Connection) -> None:
        create_tables(conn, metadata, tables=self.tables)

    def clear(self, conn: sa.Connection) -> None:
        for table in reversed(self.tables):
            conn.execute(table.delete())


# -- cases ----------------------------------------------------------------------------

cases = sa.Table(
    "insights_cases",
    metadata,
    sa.Column("case_id", sa.String(40), primary_key=True),
    *_unit_columns(),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("registered_at", TS, nullable=False),
    sa.Column("dispatch_due", TS, nullable=False),
    sa.Column("resolution_due", TS, nullable=False),
    sa.Column("resolved_at", TS),
    sa.Column("satisfaction", sa.Integer),
)
case_events = sa.Table(
    "insights_case_events",
    metadata,
    sa.Column("case_id", sa.String(40), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("type", sa.String(60), nullable=False),
    sa.Column("occurred_at", TS, nullable=False),
    sa.Column("actor", sa.String(100)),
    sa.Column("correlation_id", sa.String(100)),
    sa.Column("details", sa.Text, nullable=False),
)

# A case's status after each event is cases' to say (its event contract).
ENDED = lifecycle.values(lifecycle.ENDED)
UNDISPATCHED = lifecycle.values(lifecycle.UNDISPATCHED)


class CaseFacts(FactsProjection):
    """A row per case (status, deadlines, resolution, rating) and its timeline."""

    name = "insights_cases"
    tables = (
        cases,
        case_events,
    )

    @property
    def filter(self) -> EventFilter:
        return EventFilter.of(categories=["case"])  # every case event, for the timeline

    def apply(self, event: RecordedEvent, conn: sa.Connection) -> None:
        self.apply_all([event], conn)

    def apply_all(self, events: list[RecordedEvent], conn: sa.Connection) -> None:
        """A batch in a few statements: the new cases and the timeline inserted
        together, and each case's changes folded into one update (a replay of a
        million events goes at the speed of SQLite's executemany, not of one
        statement per event)."""
        timeline: list[dict[str, Any]] = []
        new: dict[str, dict[str, Any]] = {}
        changed: dict[str, dict[str, Any]] = {}
        for event in events:
            case_id = _id_of(event)
            timeline.append(timeline_row(case_id, event))
            if event.type == "CaseRegistered":
                new[case_id] = registered_row(case_id, event.data)
                continue
            values = case_changes(event)
            if not values:
                continue
            if case_id in new:
                new[case_id].update(values)
            else:
                changed.setdefault(case_id, {}).update(values)
        insert_many(conn, cases, list(new.values()))
        insert_many(conn, case_events, timeline)
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for case_id, values in changed.items():
            row = {"case": case_id, **{f"new_{k}": v for k, v in values.items()}}
            by_columns.setdefault(tuple(sorted(values)), []).append(row)
        for columns, rows in by_columns.items():
            update = (
                cases.update()
                .where(cases.c.case_id == sa.bindparam("case"))
                .values({c: sa.bindparam(f"new_{c}") for c in columns})
            )
            conn.execute(update, rows)


def timeline_row(case_id: str, event: RecordedEvent) -> dict[str, Any]:
    """An event of the timeline: no names; the case's sealed text stays sealed, to be
    shown by the rule when asked (``civitas.sealing``)."""
    details = kept_for_timeline(event.data)
    return {
        "case_id": case_id,
        "version": event.stream_version,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "actor": event.actor,
        "correlation_id": event.correlation_id,
        "details": orjson.dumps(details, option=orjson.OPT_SORT_KEYS).decode(),
    }


def registered_row(case_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "case_id": case_id,
        **_units(data["community_code"]),
        "status": lifecycle.STATUS_AFTER["CaseRegistered"].value,
        "registered_at": _when(data["registered_at"]),
        "dispatch_due": _when(data["dispatch_due"]),
        "resolution_due": _when(data["resolution_due"]),
        "resolved_at": None,
        "satisfaction": None,
    }


def case_changes(event: RecordedEvent) -> dict[str, Any]:
    """The columns of a case an event sets (none for notes and the like)."""
    data = event.data
    values: dict[str, Any] = {}
    if event.type == "CaseClassified":
        values = {k: _when(data[k]) for k in ("dispatch_due", "resolution_due")}
    elif event.type == "CaseResolved":
        values = {"resolved_at": _when(data["resolved_at"])}
    elif event.type == "CaseFollowedUp":
        values = {"satisfaction": data["satisfaction"]}
    elif event.type == "CaseReopened":
        values = {
            "resolved_at": None,
            "satisfaction": None,  # the unhappy rating was the last word on the old answer
            "resolution_due": _when(data["resolution_due"]),
        }
        if data.get("dispatch_due"):  # answered on the spot: dispatched anew
            values["dispatch_due"] = _when(data["dispatch_due"])
    status = lifecycle.status_after(event.type, data)
    if status is not None:
        values["status"] = status.value
    return values


# -- volunteers -------------------------------------------------------------------------

activities = sa.Table(
    "insights_activities",
    metadata,
    sa.Column("activity_id", sa.String(40), primary_key=True),
    *_unit_columns(),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("starts_at", TS, nullable=False),
)
hours = sa.Table(
    "insights_hours",
    metadata,
    sa.Column("activity_id", sa.String(40), primary_key=True),
    sa.Column("volunteer_id", sa.String(40), primary_key=True),
    sa.Column("member_id", sa.String(40), index=True),
    *_unit_columns(),
    sa.Column("served_at", TS, nullable=False),
    sa.Column("tenths_of_hours", sa.Integer, nullable=False),
)


class Volunteering(FactsProjection):
    """Verified hours, by the activity's community and day."""

    name = "insights_volunteering"
    tables = (
        activities,
        hours,
    )

    @handles("ActivityCreated")
    def on_created(self, event: RecordedEvent, conn: sa.Connection) -> None:
        data = event.data
        conn.execute(
            activities.insert().values(
                activity_id=_id_of(event),
                **_units(data["community_code"]),
                title=data["title"],
                starts_at=_when(data["starts_at"]),
            )
        )

    @handles("HoursVerified")
    def on_verified(self, event: RecordedEvent, conn: sa.Connection) -> None:
        activity = conn.execute(
            sa.select(activities).where(activities.c.activity_id == _id_of(event))
        ).one()
        conn.execute(
            hours.insert().values(
                activity_id=activity.activity_id,
                volunteer_id=event.data["volunteer_id"],
                member_id=event.data.get("member_id"),
                community_code=activity.community_code,
                street_code=activity.street_code,
                served_at=activity.starts_at,
                tenths_of_hours=event.data["tenths_of_hours"],
            )
        )


# -- funds ------------------------------------------------------------------------------

accounts = sa.Table(
    "insights_accounts",
    metadata,
    sa.Column("account_id", sa.String(80), primary_key=True),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("owner_code", sa.String(20), nullable=False),
    *_unit_columns(),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("balance_fen", sa.BigInteger, nullable=False),
    sa.Column("reserved_fen", sa.BigInteger, nullable=False),
)
entries = sa.Table(
    "insights_entries",
    metadata,
    sa.Column("account_id", sa.String(80), primary_key=True),
    sa.Column("transfer_id", sa.String(40), primary_key=True),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("counterpart", sa.String(80), nullable=False),
    sa.Column("booked_at", TS, nullable=False, index=True),
    sa.Column("memo", sa.String(500), nullable=False),
    sa.Column("balance_fen", sa.BigInteger, nullable=False),  # after this entry
    sa.Column("position", sa.BigInteger, nullable=False),  # orders the entries
)
holds = sa.Table(
    "insights_holds",
    metadata,
    sa.Column("account_id", sa.String(80), primary_key=True),
    sa.Column("transfer_id", sa.String(40), primary_key=True),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
)


class FundLedger(FactsProjection):
    """Accounts with balances and holds, and every entry with the balance after it."""

    name = "insights_funds"
    tables = (
        accounts,
        entries,
        holds,
    )

    @handles(*postings.EVENT_TYPES)
    def on_account_event(self, event: RecordedEvent, conn: sa.Connection) -> None:
        """What the event does to its account, as funds state it (``civitas.funds.postings``)."""
        account = _id_of(event)
        for change in postings.changes(event.type, event.data):
            match change:
                case postings.Opened(kind, owner_code, name):
                    conn.execute(
                        accounts.insert().values(
                            account_id=account,
                            kind=kind,
                            owner_code=owner_code,
                            **_units(owner_code),
                            name=name,
                            balance_fen=0,
                            reserved_fen=0,
                        )
                    )
                case postings.Held(transfer_id, amount):
                    conn.execute(
                        holds.insert().values(
                            account_id=account, transfer_id=transfer_id, amount_fen=amount
                        )
                    )
                    self._change(conn, account, reserved=amount)
                case postings.Released(transfer_id):
                    self._release(conn, account, transfer_id)
                case postings.Posted():
                    self._book(conn, account, change, event.position)

    def _book(
        self, conn: sa.Connection, account: str, posted: postings.Posted, position: int
    ) -> None:
        self._change(conn, account, balance=posted.amount_fen)
        balance = conn.execute(
            sa.select(accounts.c.balance_fen).where(accounts.c.account_id == account)
        ).scalar_one()
        conn.execute(
            entries.insert().values(
                account_id=account,
                transfer_id=posted.transfer_id,
                amount_fen=posted.amount_fen,
                counterpart=posted.counterpart,
                booked_at=posted.booked_at,
                memo=posted.memo,
                balance_fen=balance,
                position=position,
            )
        )

    def _release(self, conn: sa.Connection, account: str, transfer_id: str) -> None:
        held = (holds.c.account_id == account) & (holds.c.transfer_id == transfer_id)
        amount = conn.execute(sa.select(holds.c.amount_fen).where(held)).scalar()
        if amount is not None:
            conn.execute(holds.delete().where(held))
            self._change(conn, account, reserved=-amount)

    @staticmethod
    def _change(conn: sa.Connection, account: str, balance: int = 0, reserved: int = 0) -> None:
        conn.execute(
            accounts.update()
            .where(accounts.c.account_id == account)
            .values(
                balance_fen=accounts.c.balance_fen + balance,
                reserved_fen=accounts.c.reserved_fen + reserved,
            )
        )


# -- party_orgs -------------------------------------------------------------------------

units = sa.Table(
    "insights_units",
    metadata,
    sa.Column("code", sa.String(20), primary_key=True),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("parent_code", sa.String(20), index=True),
    sa.Column("population", sa.Integer, nullable=False),
)
orgs = sa.Table(
    "insights_orgs",
    metadata,
    sa.Column("org_id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("unit_code", sa.String(20), nullable=False),
    *_unit_columns(),
)
members = sa.Table(
    "insights_members",
    metadata,
    sa.Column("member_id", sa.String(40), primary_key=True),
    sa.Column("member_number", sa.String(40), nullable=False),
    sa.Column("org_id", sa.String(40), nullable=False),
    *_unit_columns(),
    sa.Column("working", sa.Boolean, nullable=False),
    sa.Column("reports_to", sa.String(20), index=True),
    sa.Column("reports_to_street", sa.String(20), index=True),
)
card_entries = sa.Table(
    "insights_card_entries",
    metadata,
    sa.Column("member_id", sa.String(40), primary_key=True),
    sa.Column("entry_id", sa.String(120), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("tenths_of_hours", sa.Integer, nullable=False),
    sa.Column("occurred_at", TS, nullable=False),
)
feedback = sa.Table(
    "insights_feedback",
    metadata,
    sa.Column("member_id", sa.String(40), primary_key=True),
    sa.Column("feedback_id", sa.String(120), primary_key=True),
    sa.Column("rating", sa.Integer, nullable=False),
    sa.Column("comment", sa.String(1000), nullable=False),
    sa.Column("recorded_at", TS, nullable=False),
)
appraisals = sa.Table(
    "insights_appraisals",
    metadata,
    sa.Column("member_id", sa.String(40), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("rating", sa.String(20), nullable=False),
)
PARTY_TABLES = [units, orgs, members, card_entries, feedback, appraisals]


class PartyFacts(FactsProjection):
    """Units, organizations, members and their cards."""

    name = "insights_party"
    tables = (*PARTY_TABLES,)

    @handles("UnitRegistered")
    def on_unit(self, event: RecordedEvent, conn: sa.Connection) -> None:
        data = event.data
        conn.execute(
            units.insert().values(
                code=data["code"],
                kind=data["kind"],
                name=data["name"],
                parent_code=data["parent_code"],
                population=data["population"],
            )
        )

    @handles("UnitRenamed")
    def on_renamed(self, event: RecordedEvent, conn: sa.Connection) -> None:
        code = _id_of(event)
        conn.execute(units.update().where(units.c.code == code).values(name=event.data["name"]))

    @handles("PartyOrgFounded")
    def on_founded(self, event: RecordedEvent, conn: sa.Connection) -> None:
        data, org_id = event.data, _id_of(event)
        conn.execute(
            orgs.insert().values(
                org_id=org_id,
                kind=data["kind"],
                name=data["name"],
                unit_code=data["unit_code"],
                **_units(data["unit_code"]),
            )
        )
        # From Kafka, a member's stream may arrive before its org's (partitions are
        # ordered only within themselves): members seen first get their units now.
        conn.execute(
            members.update().where(members.c.org_id == org_id).values(**_units(data["unit_code"]))
        )

    @handles("MemberAdmitted")
    def on_admitted(self, event: RecordedEvent, conn: sa.Connection) -> None:
        data = event.data
        conn.execute(
            members.insert().values(
                member_id=_id_of(event),
                member_number=data["member_number"],
                org_id=data["org_id"],
                working=data["working"],
                **self._org_units(conn, data["org_id"]),
            )
        )

    @handles("TransferReceived")
    def on_transferred(self, event: RecordedEvent, conn: sa.Connection) -> None:
        org_id = event.data["to_org_id"]
        conn.execute(
            members.update()
            .where(members.c.member_id == _id_of(event))
            .values(org_id=org_id, **self._org_units(conn, org_id))
        )

    @handles("ReportedToCommunity")
    def on_reported(self, event: RecordedEvent, conn: sa.Connection) -> None:
        community = event.data["community_code"]
        conn.execute(
            members.update()
            .where(members.c.member_id == _id_of(event))
            .values(reports_to=community, reports_to_street=street_of(community))
        )

    @handles("CardActivityRecorded")
    def on_card_activity(self, event: RecordedEvent, conn: sa.Connection) -> None:
        data = event.data
        conn.execute(
            card_entries.insert().values(
                member_id=_id_of(event),
                entry_id=data["activity_id"],
                kind=data["kind"],
                description=data["description"],
                tenths_of_hours=data["tenths_of_hours"],
                occurred_at=_when(data["occurred_at"]),
            )
        )

    @handles("ResidentFeedbackRecorded")
    def on_feedback(self, event: RecordedEvent, conn: sa.Connection) -> None:
        data = event.data
        conn.execute(
            feedback.insert().values(
                member_id=_id_of(event),
                feedback_id=data["feedback_id"],
                rating=data["rating"],
                comment=data["comment"],
                recorded_at=_when(data["recorded_at"]),
            )
        )

    @handles("AppraisalRated")
    def on_appraised(self, event: RecordedEvent, conn: sa.Connection) -> None:
        member, year = _id_of(event), event.data["year"]
        conn.execute(  # a rating may be changed
            appraisals.delete().where(
                (appraisals.c.member_id == member) & (appraisals.c.year == year)
            )
        )
        conn.execute(
            appraisals.insert().values(member_id=member, year=year, rating=event.data["rating"])
        )

    @staticmethod
    def _org_units(conn: sa.Connection, org_id: str) -> dict[str, str | None]:
        row = conn.execute(
            sa.select(orgs.c.community_code, orgs.c.street_code).where(orgs.c.org_id == org_id)
        ).one_or_none()
        if row is None:
            return {"community_code": None, "street_code": None}
        return {"community_code": row.community_code, "street_code": row.street_code}
