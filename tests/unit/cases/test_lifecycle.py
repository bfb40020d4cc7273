"""A case's status after each event is written once (``civitas.cases.lifecycle``): the
aggregate, cases' case index and insights' case facts agree on it, event by event."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from civitas.cases import lifecycle
from civitas.cases.case_index import CaseIndex
from civitas.cases.case_index import cases as index_table
from civitas.cases.domain import case as case_module
from civitas.cases.domain.case import Case, Channel, DeadlinePolicy, Urgency
from civitas.eventkit import DomainEvent, RecordedEvent, SealedName
from civitas.insights.projections import CaseFacts
from civitas.insights.projections import cases as insights_table

T0 = datetime(2026, 4, 1, 9, tzinfo=UTC)
POLICY = DeadlinePolicy.default()
CASE_EVENTS = {
    cls.event_type
    for cls in vars(case_module).values()
    if isinstance(cls, type)
    and issubclass(cls, DomainEvent)
    and cls.__module__ == case_module.__name__
}


def registered(case_id: str) -> Case:
    return Case.register(
        case_id,
        Channel.HOTLINE_12345,
        "QH-01-01",
        "大光路12号",
        "pd1:description",
        Urgency.NORMAL,
        "resident-1",
        "pd1:name",
        "pd1:phone",
        T0,
        POLICY,
    )


def person(name: str) -> SealedName:
    return SealedName(f"person-{name}", f"sealed({name})")


def dispatch(case: Case, grid: str = "QH-01-01-G01") -> None:
    case.dispatch(grid, "branch-1", person("王芳"), T0 + timedelta(minutes=30))


def answered_then_reopened_then_worked_to_close(case: Case) -> None:
    case.classify("政策咨询", Urgency.LOW, POLICY)
    case.answer_on_spot("窗口办理", T0)
    case.follow_up(1, "")
    case.reopen("没有解决", T0 + timedelta(days=1), POLICY)  # no handler: back to be filed
    case.supervise(T0 + timedelta(days=30))
    dispatch(case)
    case.return_to_sender("不属于本网格")
    dispatch(case)
    case.accept(person("王芳"))
    case.note_progress("pd1:note")
    case.request_funds(50_000, "payee:QH:yinfa", "助老", "合同")
    case.record_funding_outcome(_pending(case), True, "")
    case.request_funds(80_000, "payee:QH:wuye", "维修", "报价单")
    case.record_funding_outcome(_pending(case), False, "余额不足")
    case.open_mediation(person("陈"))
    case.hold_mediation_session("pd1:summary")
    case.conclude_mediation(True, "pd1:terms")
    case.reassign("QH-01-01-G02", "branch-2", person("李强"), "转交")
    case.accept(person("李强"))
    case.resolve("已修复", T0 + timedelta(days=2))
    case.follow_up(2, "")
    case.reopen("仍不满意", T0 + timedelta(days=3), POLICY)  # back to its handler
    case.resolve("再次修复", T0 + timedelta(days=4))
    case.follow_up(5, "")
    case.close(T0 + timedelta(days=5))


def _pending(case: Case) -> str:
    pending = case.pending_funding
    assert pending is not None
    return pending.expenditure_id


def merged(case: Case) -> None:
    case.merge_into(registered("original"))


HISTORIES: dict[str, Callable[[Case], None]] = {
    "answered, reopened, worked and closed": answered_then_reopened_then_worked_to_close,
    "merged": merged,
    "rejected": lambda c: c.reject("不受理"),
    "withdrawn": lambda c: (c.classify("类别", Urgency.URGENT, POLICY), c.file(), c.withdraw("")),
}


def recorded(case_id: str, events: list[DomainEvent]) -> list[RecordedEvent]:
    return [
        RecordedEvent(
            event_id=uuid.uuid4(),
            stream_id=Case.stream_id_of(case_id),
            stream_version=version,
            position=version + 1,
            type=event.event_type,
            schema_version=event.schema_version,
            occurred_at=T0,
            actor="tester",
            correlation_id=None,
            causation_id=None,
            data=event.to_data(),
            hash=b"",
        )
        for version, event in enumerate(events)
    ]


def test_the_histories_cover_every_event_of_a_case() -> None:
    seen = set()
    for name, history in HISTORIES.items():
        case = registered(name)
        history(case)
        seen |= {e.event_type for e in case.collect_pending()}
    assert seen == CASE_EVENTS


@pytest.mark.parametrize("name", sorted(HISTORIES))
def test_the_aggregate_the_case_index_and_insights_agree_on_the_status_after_each_event(
    name: str,
) -> None:
    case_id = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    case = registered(case_id)
    HISTORIES[name](case)
    events = case.collect_pending()
    index, facts = CaseIndex(), CaseFacts()
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        index.create(conn)
        facts.create(conn)
        for count, event in enumerate(recorded(case_id, events), start=1):
            index.apply(event, conn)
            facts.apply(event, conn)
            status = Case.replay(case_id, events[:count]).status
            in_index = conn.scalar(sa.select(index_table.c.status))
            in_insights = conn.scalar(sa.select(insights_table.c.status))
            assert (event.type, in_index, in_insights) == (event.type, status, status)
            assert lifecycle.status_after(event.type, event.data) in (None, status)
