"""The Case state machine: transitions, refusals, deadlines, and random sequences."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civitas.cases.application import Intake
from civitas.cases.domain.case import (
    FINAL,
    Case,
    Channel,
    Deadline,
    DeadlinePolicy,
    FundingStatus,
    Status,
    Urgency,
)
from civitas.errors import InvalidInput, RuleViolation
from civitas.eventkit import UNSEALED, SealedName, registry

T0 = datetime(2026, 4, 1, 9, tzinfo=UTC)
POLICY = DeadlinePolicy.default()


def new_case(urgency: Urgency = Urgency.NORMAL, case_id: str = "c1") -> Case:
    return Case.register(
        case_id,
        Channel.HOTLINE_12345,
        "QH-01-01",
        "大光路12号",
        "楼道灯坏了",
        urgency,
        "r1",
        "pd1:a:b",
        "pd1:c:d",
        T0,
        POLICY,
    )


def named(name: str) -> SealedName:
    """A name as the application hands it to the domain: sealed under a person id (the
    domain never reads the ciphertext, so any text stands for it here)."""
    return SealedName(f"person-{name}", f"sealed({name})")


def dispatched(case: Case | None = None) -> Case:
    case = case or new_case()
    case.classify("公共设施", Urgency.NORMAL, POLICY)
    case.file()
    case.dispatch("QH-01-01-G01", "branch-1", named("王芳"), T0 + timedelta(minutes=30))
    return case


def test_a_request_answered_on_the_spot_is_resolved_at_once() -> None:
    case = new_case()
    case.classify("政策咨询", Urgency.LOW, POLICY)
    case.answer_on_spot("医保报销在街道服务中心窗口办理", T0)

    assert case.status is Status.RESOLVED
    assert [type(e).__name__ for e in case.collect_pending()][-2:] == [
        "CaseAnsweredOnSpot",
        "CaseResolved",
    ]


def test_the_long_path_through_mediation_to_closing() -> None:
    case = dispatched()
    case.accept(named("王芳"))
    case.note_progress("已联系物业")
    case.open_mediation(named("老党员调解员 陈"))
    case.hold_mediation_session("双方到场")
    case.conclude_mediation(True, "物业三日内修复")
    case.resolve("已修复", T0 + timedelta(days=2))
    case.follow_up(5, "满意")
    case.close(T0 + timedelta(days=3))

    assert case.status is Status.CLOSED
    assert Case.replay("c1", case.collect_pending()).status is Status.CLOSED


def test_a_returned_case_goes_back_to_be_dispatched_again() -> None:
    case = dispatched()
    case.return_to_sender("不属于本网格")

    assert (case.status, case.grid_code) == (Status.FILED, None)
    case.dispatch("QH-01-01-G02", None, named("李强"), T0 + timedelta(hours=1))
    assert case.grid_code == "QH-01-01-G02"


def test_a_case_is_reassigned_to_another_person_not_to_the_one_who_has_it() -> None:
    case = dispatched()

    with pytest.raises(RuleViolation, match="with that handler"):
        case.reassign("QH-01-01-G01", None, SealedName("person-王芳", "sealed anew"), "转交")
    case.reassign("QH-01-01-G01", None, named("李强"), "网格长换人")

    assert case.handler == named("李强")


def test_handlers_and_mediators_written_before_names_were_sealed_still_read() -> None:
    case = new_case()
    case.classify("公共设施", Urgency.NORMAL, POLICY)
    case.file()
    at = T0.isoformat()
    v1 = {"grid_code": "QH-01-01-G01", "grid_branch_id": None, "handler": "王芳"}
    for event_type, data in [
        ("CaseDispatched", {**v1, "dispatched_at": at}),
        ("CaseAccepted", {"by": "王芳"}),
        ("MediationOpened", {"mediator": "陈"}),
    ]:
        case.apply(registry.decode(event_type, 1, data))

    assert case.handler == SealedName(UNSEALED, None, "王芳")
    assert case.mediator == SealedName(UNSEALED, None, "陈")
    assert case.status is Status.IN_MEDIATION


def test_an_unsatisfied_resident_gets_the_case_reopened_not_closed() -> None:
    case = dispatched()
    case.accept(named("王芳"))
    case.resolve("已处理", T0 + timedelta(days=1))
    case.follow_up(2, "没修好")

    with pytest.raises(RuleViolation, match="rated 2 of 5"):
        case.close(T0 + timedelta(days=2))
    case.reopen("居民不满意", T0 + timedelta(days=2), POLICY)
    assert case.status is Status.IN_PROGRESS


def test_a_case_answered_on_the_spot_and_reopened_goes_back_to_be_dispatched() -> None:
    case = new_case()
    case.classify("咨询", Urgency.NORMAL, POLICY)
    case.answer_on_spot("已电话答复", T0)
    case.follow_up(1, "没解决")
    reopened_at = T0 + timedelta(days=3)

    case.reopen("居民不满意", reopened_at, POLICY)

    assert (case.status, case.handler) == (Status.FILED, None)
    assert case.dispatch_due == reopened_at + POLICY.dispatch[Urgency.NORMAL]
    assert case.supervise(reopened_at + timedelta(minutes=1)) == []  # its old deadline is gone
    assert Deadline.DISPATCH in case.supervise(reopened_at + timedelta(hours=3))
    case.dispatch("QH-01-01-G01", None, named("王芳"), reopened_at + timedelta(hours=3))
    assert case.status is Status.DISPATCHED


def test_deadlines_follow_urgency_and_classification_recomputes_them() -> None:
    urgent = new_case(Urgency.URGENT)
    low = new_case(Urgency.LOW)

    assert (urgent.dispatch_due, urgent.resolution_due) == (
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=24),
    )
    assert (low.dispatch_due, low.resolution_due) == (
        T0 + timedelta(hours=24),
        T0 + timedelta(days=15),
    )
    low.classify("安全隐患", Urgency.URGENT, POLICY)
    assert low.dispatch_due == T0 + timedelta(hours=1)


def test_a_breached_deadline_gets_one_notice_however_often_it_is_checked() -> None:
    case = new_case(Urgency.URGENT)
    assert case.supervise(T0 + timedelta(minutes=59)) == []

    first = case.supervise(T0 + timedelta(hours=2))
    again = case.supervise(T0 + timedelta(hours=3))
    later = case.supervise(T0 + timedelta(hours=25))

    assert (first, again, later) == ([Deadline.DISPATCH], [], [Deadline.RESOLUTION])


def test_a_dispatched_case_is_no_longer_late_for_dispatch() -> None:
    case = dispatched(new_case(Urgency.URGENT))
    assert case.breached(T0 + timedelta(hours=2)) == []


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (lambda c: c.file(), "cannot file a case that is registered"),
        (lambda c: c.accept(named("x")), "cannot accept"),
        (lambda c: c.resolve("x", T0), "cannot resolve"),
        (lambda c: c.follow_up(5, ""), "cannot follow up"),
        (lambda c: c.close(T0), "cannot close"),
        (lambda c: c.open_mediation(named("x")), "cannot open mediation"),
    ],
)
def test_a_command_out_of_turn_is_refused_and_records_nothing(command: Any, message: str) -> None:
    case = new_case()
    with pytest.raises(RuleViolation, match=message):
        command(case)
    assert len(case.collect_pending()) == 1


def test_merge_reject_and_withdraw_end_a_case_for_good() -> None:
    original, duplicate, rejected, withdrawn = (new_case(case_id=i) for i in "abcd")
    duplicate.merge_into(original)
    rejected.reject("属于法院受理范围")
    withdrawn.withdraw("已自行解决")

    assert (duplicate.status, duplicate.merged_into) == (Status.MERGED, "a")
    for case in (duplicate, rejected, withdrawn):
        with pytest.raises(RuleViolation, match="cannot"):
            case.withdraw("again")
    with pytest.raises(RuleViolation, match="into itself"):
        original.merge_into(original)
    with pytest.raises(RuleViolation, match="original case is merged"):
        new_case(case_id="e").merge_into(duplicate)


def test_bad_values_are_refused() -> None:
    with pytest.raises(InvalidInput, match="description is required"):
        Case.register(
            "x", Channel.ONLINE, "QH-01-01", "a", " ", Urgency.LOW, "r", "", "", T0, POLICY
        )
    case = dispatched()
    case.accept(named("王芳"))
    case.resolve("好了", T0)
    with pytest.raises(InvalidInput, match="from 1 to 5"):
        case.follow_up(0, "")


# -- random sequences --------------------------------------------------------------------

COMMANDS = {
    "classify": lambda c, t: c.classify("类别", Urgency.URGENT, POLICY),
    "answer": lambda c, t: c.answer_on_spot("答复", t),
    "file": lambda c, t: c.file(),
    "dispatch": lambda c, t: c.dispatch("QH-01-01-G01", None, named("王芳"), t),
    "accept": lambda c, t: c.accept(named("王芳")),
    "return": lambda c, t: c.return_to_sender("不属于"),
    "reassign": lambda c, t: c.reassign("QH-01-01-G02", None, named("李强"), "转交"),
    "note": lambda c, t: c.note_progress("进展"),
    "mediate": lambda c, t: c.open_mediation(named("陈")),
    "session": lambda c, t: c.hold_mediation_session("会谈"),
    "conclude": lambda c, t: c.conclude_mediation(False, "未达成"),
    "resolve": lambda c, t: c.resolve("解决", t),
    "follow_up_happy": lambda c, t: c.follow_up(5, ""),
    "follow_up_unhappy": lambda c, t: c.follow_up(1, ""),
    "close": lambda c, t: c.close(t),
    "reopen": lambda c, t: c.reopen("不满意", t, POLICY),
    "reject": lambda c, t: c.reject("不受理"),
    "withdraw": lambda c, t: c.withdraw(""),
    "supervise": lambda c, t: c.supervise(t),
    "request_funds": lambda c, t: c.request_funds(50_000, "payee:QH:yinfa", "助老", "合同"),
    "other_funds": lambda c, t: c.request_funds(80_000, "payee:QH:wuye", "维修", "报价单"),
    "funds_paid": lambda c, t: c.record_funding_outcome(waiting(c), True, ""),
    "funds_refused": lambda c, t: c.record_funding_outcome(waiting(c), False, "余额不足"),
}
# What funds reports lands whatever the case's state: money moved, or did not.
OUTCOMES = {"supervise", "funds_paid", "funds_refused"}


def waiting(case: Case) -> str:
    pending = case.pending_funding
    return pending.expenditure_id if pending else "no-such-request"


def state_of(case: Case) -> dict[str, Any]:
    return copy.deepcopy({k: v for k, v in vars(case).items() if k != "_pending"})


def check_invariants(case: Case) -> None:
    assert case.status in Status
    if case.status in (Status.DISPATCHED, Status.IN_PROGRESS, Status.IN_MEDIATION):
        assert case.grid_code
        assert case.handler
    if case.status in (Status.RESOLVED, Status.FOLLOWED_UP, Status.CLOSED):
        assert case.resolved_at is not None
    if case.status in (Status.FOLLOWED_UP, Status.CLOSED):
        assert case.satisfaction is not None
    if case.status is Status.CLOSED:
        assert (case.satisfaction or 0) > 2
    if case.status is Status.IN_MEDIATION:
        assert case.mediator
    pending = [r for r in case.funding.values() if r.status is FundingStatus.PENDING]
    assert len(pending) <= 1


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(COMMANDS)), st.integers(0, 60 * 24 * 20)), max_size=40
    )
)
def test_random_command_sequences_keep_the_case_valid_and_replayable(steps: list) -> None:
    case = new_case(Urgency.URGENT)
    for name, minutes in steps:
        before, recorded = state_of(case), len(case.collect_pending())
        was_final = case.status in FINAL
        try:
            COMMANDS[name](case, T0 + timedelta(minutes=minutes))
        except (RuleViolation, InvalidInput):
            assert state_of(case) == before, f"a refused {name} changed the case"
            assert len(case.collect_pending()) == recorded
        else:
            assert not was_final or name in OUTCOMES, f"{name} changed a final case"
        check_invariants(case)

    replayed = Case.replay(case.id, case.collect_pending())
    assert state_of(replayed) == state_of(case)


def test_deadlines_are_configurable_and_bad_settings_are_refused() -> None:
    policy = DeadlinePolicy.parse("urgent=30m/12h, low=2d/30d")

    assert (policy.dispatch[Urgency.URGENT], policy.resolution[Urgency.URGENT]) == (
        timedelta(minutes=30),
        timedelta(hours=12),
    )
    assert policy.resolution[Urgency.LOW] == timedelta(days=30)
    assert policy.dispatch[Urgency.NORMAL] == timedelta(hours=2)  # left at its default
    with pytest.raises(ValueError, match="not like"):
        DeadlinePolicy.parse("urgent=soon")


def test_long_descriptions_and_notes_are_accepted_up_to_two_thousand_characters() -> None:
    intake = Intake.of("大光路12号", "长" * 2000)
    with pytest.raises(InvalidInput, match="longer than 2000"):
        Intake.of("大光路12号", "长" * 2001)
    case = new_case()
    case.classify("类别", Urgency.LOW, POLICY)
    with pytest.raises(InvalidInput, match="longer than 2000"):
        case.answer_on_spot("长" * 2001, T0)
    assert len(intake.description) == 2000


def test_a_satisfied_resident_closes_the_case_and_it_cannot_be_reopened() -> None:
    case = dispatched()
    case.accept(named("王芳"))
    case.resolve("已处理", T0 + timedelta(days=1))
    case.follow_up(4, "满意")
    with pytest.raises(RuleViolation, match="rated 4 of 5: close"):
        case.reopen("不满意", T0 + timedelta(days=2), POLICY)


def test_a_reopened_case_has_a_new_resolution_deadline_and_gets_its_own_notice() -> None:
    case = dispatched()
    case.accept(named("王芳"))
    assert case.supervise(T0 + timedelta(days=8)) == [Deadline.RESOLUTION]
    case.resolve("已处理", T0 + timedelta(days=9))
    case.follow_up(1, "没修好")
    case.reopen("没修好", T0 + timedelta(days=10), POLICY)

    assert case.resolution_due == T0 + timedelta(days=17)
    assert case.supervise(T0 + timedelta(days=11)) == []
    assert case.supervise(T0 + timedelta(days=18)) == [Deadline.RESOLUTION]


def test_a_reclassification_that_moves_a_deadline_gets_a_new_notice() -> None:
    case = new_case(Urgency.URGENT)
    assert case.supervise(T0 + timedelta(hours=2)) == [Deadline.DISPATCH]
    case.classify("一般", Urgency.LOW, POLICY)

    assert case.supervise(T0 + timedelta(hours=3)) == []
    assert case.supervise(T0 + timedelta(hours=25)) == [Deadline.DISPATCH]


def in_progress() -> Case:
    case = dispatched()
    case.accept(named("王芳"))
    return case


def test_a_case_in_progress_asks_for_money_once_and_records_the_outcome_once() -> None:
    case = in_progress()
    asked = case.request_funds(120_000, "payee:QH:yinfa", "独居老人助餐", "报价单 17")
    retried = case.request_funds(120_000, "payee:QH:yinfa", "独居老人助餐", "报价单 17")
    case.record_funding_outcome(asked.expenditure_id, True, "")
    case.record_funding_outcome(asked.expenditure_id, False, "redelivered, too late")

    events = case.collect_pending()
    assert retried.expenditure_id == asked.expenditure_id
    assert [type(e).__name__ for e in events][-2:] == ["CaseFundingRequested", "CaseFundingGranted"]
    assert case.funding[asked.expenditure_id].status is FundingStatus.GRANTED
    replayed = Case.replay(case.id, events)
    assert replayed.funding == case.funding


def test_a_second_request_waits_for_the_first_and_gets_its_own_expenditure() -> None:
    case = in_progress()
    first = case.request_funds(120_000, "payee:QH:yinfa", "助餐", "报价单")
    with pytest.raises(RuleViolation, match="waits for the outcome"):
        case.request_funds(99_000, "payee:QH:yinfa", "另一笔", "报价单")
    case.record_funding_outcome(first.expenditure_id, False, "rejected: 预算不足")
    second = case.request_funds(99_000, "payee:QH:yinfa", "另一笔", "报价单")

    assert second.expenditure_id != first.expenditure_id
    assert case.funding[first.expenditure_id].reason == "rejected: 预算不足"
    assert case.pending_funding == second


@pytest.mark.parametrize(
    ("amount", "payee", "purpose", "evidence", "words"),
    [
        (0, "payee:QH:yinfa", "x", "y", "positive whole number"),
        (12.5, "payee:QH:yinfa", "x", "y", "positive whole number"),
        (100, "fund:QH-01-01:special", "x", "y", "not a payee"),
        (100, "payee:QH:yinfa", " ", "y", "purpose is required"),
        (100, "payee:QH:yinfa", "x", "", "evidence is required"),
    ],
)
def test_a_bad_request_for_money_is_refused_and_records_nothing(
    amount: Any, payee: str, purpose: str, evidence: str, words: str
) -> None:
    case = in_progress()
    recorded = len(case.collect_pending())
    with pytest.raises(InvalidInput, match=words):
        case.request_funds(amount, payee, purpose, evidence)
    assert len(case.collect_pending()) == recorded
    assert case.funding == {}


def test_money_is_asked_for_only_while_the_case_is_worked_on() -> None:
    case = dispatched()
    with pytest.raises(RuleViolation, match="cannot request funds for a case that is dispatched"):
        case.request_funds(100, "payee:QH:yinfa", "x", "y")
    with pytest.raises(RuleViolation, match="no funding request"):
        case.record_funding_outcome("unknown", True, "")


def test_a_registration_notes_and_mediation_written_before_sealing_still_read() -> None:
    at = T0.isoformat()
    v1 = {
        "channel": "online",
        "community_code": "QH-01-01",
        "address": "大光路12号3栋2单元302室",
        "description": "楼道灯坏了",
        "urgency": "normal",
        "resident_id": "r1",
        "resident_name_ciphertext": "pd1:a:b",
        "resident_phone_ciphertext": "pd1:c:d",
        **{k: at for k in ("registered_at", "dispatch_due", "resolution_due")},
    }
    case = Case("c1")
    case.apply(registry.decode("CaseRegistered", 1, v1))
    events = [
        registry.decode("ProgressNoted", 1, {"note": "已联系物业"}),
        registry.decode("MediationSessionHeld", 1, {"summary": "双方到场"}),
        registry.decode("MediationConcluded", 1, {"agreed": True, "terms": "三日内修复"}),
    ]

    assert (case.address, case.address_rest) == (
        "大光路12号3栋",
        SealedName("r1", None, "2单元302室"),
    )
    assert case.description == SealedName("r1", None, "楼道灯坏了")
    assert [getattr(e, f) for e, f in zip(events, ("note", "summary", "terms"), strict=True)] == [
        "已联系物业",
        "双方到场",
        "三日内修复",
    ]
    assert [type(e).schema_version for e in events] == [2, 2, 2]


def test_new_registrations_keep_only_the_clear_part_of_the_address() -> None:
    case = Case.register(
        "c2",
        Channel.ONLINE,
        "QH-01-01",
        "大光路12号3栋",
        "sealed(d)",
        Urgency.LOW,
        "r1",
        "pd1:a:b",
        "pd1:c:d",
        T0,
        POLICY,
        None,
        "sealed(rest)",
    )
    registered = case.collect_pending()[0].to_data()

    assert registered["address"] == "大光路12号3栋"
    assert (registered["address_rest_ciphertext"], registered["address_rest"]) == (
        "sealed(rest)",
        None,
    )
    assert case.address_rest == SealedName("r1", "sealed(rest)")
    assert case.description == SealedName("r1", "sealed(d)")
