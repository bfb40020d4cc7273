"""Replay rate of an insights projection from a million events on SQLite, beside the
``eventsourcing`` library's projection runner over the same events.

Run with ``make bench-replay`` or ``python -m benchmarks.replay``.
Writes ``benchmarks/results/replay.json`` and prints a table.

The events: ``BENCH_EVENTS`` (default 1,000,000) case events, ten per case
(registered, classified, filed, dispatched, accepted, noted, resolved, followed
up, closed, one supervision notice), the data as cases records it. They are
written into Civitas' store once, and encoded for the peer before each of its runs,
untimed: while one side replays, only its own events are held in memory (the
peer's, held throughout, would lengthen every pass of Civitas' garbage collector).

- Civitas: a ``SqliteEventStore`` (WAL, ``synchronous=FULL``). The projection is
  insights' case facts (``CaseFacts``: a row per case and the case timeline), run
  by ``ProjectionRunner.rebuild()`` from a ``StoreFeed`` into a fresh SQLite read
  model, as ``civitas replay insights_cases`` does. A rebuild runs Python's garbage
  collector less often (``collecting_less``) and records no per-event delay metric
  for history; the peer's runner runs with the interpreter's defaults, as that
  library leaves them.
- The peer: an ``eventsourcing`` ``Application``, the same events as stored events
  of one event class carrying type and data. Its ``ProjectionRunner`` feeds a
  projection whose view (a ``SQLiteTrackingRecorder``) writes the same rows with the
  same logic, each event and its tracking record in one transaction, as that
  library's runner processes events one by one. That library's SQLite recorder
  cannot be subscribed to (``NotImplementedError``), so the peer's runner reads the
  events from its in-memory recorder (encoded beforehand, handed over as the timing
  starts): only the view is on SQLite. That favours the peer. It runs for at most
  ``BENCH_PEER_SECONDS`` (default 30); its rate is the events it processed by then.

The two alternate (Civitas, peer, Civitas, peer ...) ``BENCH_REPLAY_RUNS`` times
(default 3), each run into a fresh read model; the figures are the medians (the
machines are shared: single runs of the same code have differed by half).

Targets (issue #9): at least 50,000 events/s, and at least twice the peer.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from eventsourcing.application import Application
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.sqlite import SQLiteTrackingRecorder
from sqlalchemy.schema import CreateTable

from civitas.eventkit import (
    NewEvent,
    SqliteEventStore,
    StoreFeed,
    StreamState,
    create_read_model_engine,
)
from civitas.eventkit import (
    ProjectionRunner as CivitasRunner,
)
from civitas.insights.projections import (
    CaseFacts,
    case_changes,
    case_events,
    cases,
    registered_row,
    timeline_row,
)

from ._common import (
    Result,
    Target,
    code_state,
    env_int,
    format_table,
    log,
    machine_info,
    write_results,
)

EVENTS = env_int("BENCH_EVENTS", 1_000_000)
PEER_SECONDS = env_int("BENCH_PEER_SECONDS", 30)
RUNS = env_int("BENCH_REPLAY_RUNS", 3)
PER_CASE = 10
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def case_history(n: int) -> list[tuple[str, dict[str, Any]]]:
    at = T0 + timedelta(minutes=n)

    def iso(moment: datetime) -> str:
        return moment.isoformat()

    due = {
        "dispatch_due": iso(at + timedelta(hours=2)),
        "resolution_due": iso(at + timedelta(days=7)),
    }
    return [
        (
            "CaseRegistered",
            {
                "channel": "hotline_12345",
                "community_code": f"QH-{n % 12 + 1:02d}-{n % 9 + 1:02d}",
                "address": "大光路12号",
                "description": "楼道灯坏了",
                "urgency": "normal",
                "resident_id": f"resident-{n}",
                "resident_name_ciphertext": "pd1:bm9uY2U:c2VhbGVk",
                "resident_phone_ciphertext": "pd1:bm9uY2U:cGhvbmU",
                "registered_at": iso(at),
                **due,
            },
        ),
        ("CaseClassified", {"category": "公共设施", "urgency": "normal", **due}),
        ("CaseFiled", {}),
        (
            "CaseDispatched",
            {
                "grid_code": "QH-01-01-G01",
                "grid_branch_id": None,
                "handler_person": f"holder-{n % 686}",
                "handler_ciphertext": "pd1:bm9uY2U:aGFuZGxlcg",
                "dispatched_at": iso(at + timedelta(minutes=30)),
            },
        ),
        (
            "CaseAccepted",
            {"by_person": f"holder-{n % 686}", "by_ciphertext": "pd1:bm9uY2U:aGFuZGxlcg"},
        ),
        ("ProgressNoted", {"note": "已联系物业"}),
        ("CaseResolved", {"resolution": "已修复", "resolved_at": iso(at + timedelta(days=1))}),
        ("CaseFollowedUp", {"satisfaction": 4 + n % 2, "comment": ""}),
        ("CaseClosed", {"closed_at": iso(at + timedelta(days=2))}),
        ("SupervisionNoticeIssued", {"deadline": "dispatch", "due": iso(at), "issued_at": iso(at)}),
    ]


# -- Civitas ------------------------------------------------------------------------------


# The events whose shape changed since schema 1 (names sealed under a person id).
SCHEMAS = {"CaseDispatched": 2, "CaseAccepted": 2}


async def fill_civitas(path: Path, count: int) -> None:
    store = SqliteEventStore(path)
    try:
        for start in range(0, count // PER_CASE, 2000):
            await asyncio.gather(
                *(
                    store.append(
                        f"case-{uuid.UUID(int=n + 1)}",
                        [
                            NewEvent(t, d, schema_version=SCHEMAS.get(t, 1), occurred_at=T0)
                            for t, d in case_history(n)
                        ],
                        StreamState.NO_STREAM,
                    )
                    for n in range(start, min(start + 2000, count // PER_CASE))
                )
            )
    finally:
        await store.close()


async def replay_civitas(events: Path, read: Path) -> tuple[float, int]:
    store = SqliteEventStore(events)
    engine = create_read_model_engine(f"sqlite:///{read}")
    try:
        runner = CivitasRunner(CaseFacts(), StoreFeed(store, batch_size=5000), engine)
        await runner.setup()
        started = time.perf_counter()
        await runner.rebuild()
        seconds = time.perf_counter() - started
        with engine.connect() as conn:
            rows = conn.execute(sa.select(sa.func.count()).select_from(case_events)).scalar_one()
        return seconds, rows
    finally:
        engine.dispose()
        await store.close()


# -- the eventsourcing library ---------------------------------------------------------------


@dataclass(frozen=True)
class CaseEvent(DomainEvent):
    """One case event as the peer stores it: its type and its data."""

    type: str
    data: dict[str, Any]


class CaseFactsView(SQLiteTrackingRecorder):
    """The same read model, written per event with the tracking record."""

    def construct_create_table_statements(self) -> list[str]:
        dialect = sa.dialects.sqlite.dialect()
        ours = [
            str(CreateTable(t, if_not_exists=True).compile(dialect=dialect))
            for t in (cases, case_events)
        ]
        return [*super().construct_create_table_statements(), *ours]

    def apply(self, event: CaseEvent, tracking: Tracking) -> None:
        case_id = str(event.originator_id)
        recorded = _Recorded(event)
        with self.datastore.transaction(commit=True) as c:
            row = timeline_row(case_id, recorded)  # type: ignore[arg-type]
            row["occurred_at"] = row["occurred_at"].isoformat(sep=" ")
            c.execute(
                "INSERT INTO insights_case_events VALUES "
                "(:case_id, :version, :type, :occurred_at, :actor, :correlation_id, :details)",
                row,
            )
            if event.type == "CaseRegistered":
                new = registered_row(case_id, event.data)
                c.execute(
                    "INSERT INTO insights_cases VALUES (:case_id, :community_code, "
                    ":street_code, :status, :registered_at, :dispatch_due, :resolution_due, "
                    ":resolved_at, :satisfaction)",
                    {k: _sql(v) for k, v in new.items()},
                )
            else:
                changes = case_changes(recorded)  # type: ignore[arg-type]
                if changes:
                    sets = ", ".join(f"{k} = :{k}" for k in changes)
                    c.execute(
                        f"UPDATE insights_cases SET {sets} WHERE case_id = :case_id",
                        {**{k: _sql(v) for k, v in changes.items()}, "case_id": case_id},
                    )
            self._insert_tracking(c, tracking)


def _sql(value: Any) -> Any:
    return value.isoformat(sep=" ") if isinstance(value, datetime) else value


class _Recorded:
    """The fields of a Civitas ``RecordedEvent`` the shared row builders read."""

    def __init__(self, event: CaseEvent) -> None:
        self.type, self.data = event.type, event.data
        self.stream_version = event.originator_version - 1
        self.occurred_at = event.timestamp
        self.actor = self.correlation_id = None


class CaseFactsProjection(Projection[CaseFactsView]):
    name = "casefacts"

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.apply(domain_event, tracking)


def peer_env(tmp: Path) -> dict[str, str]:
    """The peer's events in its in-memory recorder (its SQLite recorder cannot be
    subscribed to), its view in SQLite."""
    return {
        "PERSISTENCE_MODULE": "eventsourcing.popo",
        "CASEFACTS_PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "CASEFACTS_SQLITE_DBNAME": str(tmp / "peer-read.db"),
    }


def encode_for_peer(env: dict[str, str], count: int) -> list[Any]:
    """The events as the peer stores them, encoded before anything is timed."""
    app: Application[UUID] = Application(env)
    stored = [
        app.mapper.to_stored_event(
            CaseEvent(
                originator_id=uuid.UUID(int=n + 1),
                originator_version=version,
                timestamp=T0,
                type=kind,
                data=data,
            )
        )
        for n in range(count // PER_CASE)
        for version, (kind, data) in enumerate(case_history(n), start=1)
    ]
    app.close()
    return stored


def replay_peer(tmp: Path) -> tuple[float, int]:
    """Encode the events for the peer (untimed; only for this run, so that no side holds
    the other's million events in memory while it is timed), start its runner, hand its
    application the stored events (in memory: quick), and time until the view has
    tracked them all, or the time cap."""
    tmp.mkdir()
    env = peer_env(tmp)
    stored = encode_for_peer(env, EVENTS)
    count = len(stored)
    with ProjectionRunner(
        application_class=Application[UUID],
        projection_class=CaseFactsProjection,
        view_class=CaseFactsView,
        env=env,
    ) as runner:
        started = time.perf_counter()
        for start in range(0, count, 10_000):
            runner.app.recorder.insert_events(stored[start : start + 10_000])
        deadline = started + PEER_SECONDS
        view, name = runner.view, runner.app.name
        while time.perf_counter() < deadline and (view.max_tracking_id(name) or 0) < count:
            time.sleep(0.2)
    seconds = time.perf_counter() - started  # until the runner has stopped
    done = view.max_tracking_id(name) or 0
    with sqlite3.connect(env["CASEFACTS_SQLITE_DBNAME"]) as conn:
        rows = conn.execute("SELECT count(*) FROM insights_case_events").fetchone()[0]
    if rows != done:  # the peer must have done the same work to be compared
        raise RuntimeError(f"the peer tracked {done} events but wrote {rows} timeline rows")
    return seconds, done


async def run() -> tuple[list[Result], dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    try:
        log(f"replay: writing {EVENTS:,} case events into each store (not timed)")
        await fill_civitas(tmp / "events.db", EVENTS)
        ours, theirs, peer_done = [], [], []
        for run in range(RUNS):  # A, B, A, B ...: both sides see the machine alike
            log(f"replay {run + 1}/{RUNS}: Civitas ProjectionRunner.rebuild() of case facts")
            seconds, rows = await replay_civitas(tmp / "events.db", tmp / f"read{run}.db")
            if rows != EVENTS:
                raise RuntimeError(f"Civitas wrote {rows} timeline rows for {EVENTS} events")
            ours.append(EVENTS / seconds)
            log(f"  {ours[-1]:,.0f} events/s")
            log(f"replay {run + 1}/{RUNS}: eventsourcing's ProjectionRunner, {PEER_SECONDS}s")
            seconds, done = await asyncio.to_thread(replay_peer, tmp / f"peer{run}")
            theirs.append(done / seconds)
            peer_done.append(done)
            log(f"  {theirs[-1]:,.0f} events/s ({done:,} events)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    peer = "eventsourcing ProjectionRunner, same events and read model, SQLite"
    results = [
        Result(
            "replay.insights_case_facts.sqlite",
            ours,
            "events/s",
            baseline=peer,
            baseline_samples=theirs,
            target=Target("ratio", ">=", 2),
            extra={"events": EVENTS, "peer_events": peer_done},
        ),
        Result(
            "replay.insights_case_facts.sqlite.rate",
            ours,
            "events/s",
            target=Target("value", ">=", 50_000),
        ),
    ]
    return results, {"timeline_rows": EVENTS}


def main() -> None:
    started = time.perf_counter()
    code = code_state("services/civitas/eventkit", "services/civitas/insights", "benchmarks")
    results, extra = asyncio.run(run())
    path = write_results(
        "replay",
        machine_info(),
        results,
        code=code,
        method={
            "events": EVENTS,
            "events_per_case": PER_CASE,
            "peer_time_cap_seconds": PEER_SECONDS,
            "statistic": f"median of {RUNS} runs of each side, alternating",
            **extra,
        },
    )
    print(format_table(results))
    log(f"wrote {path} in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
