"""Histories that cover every event type of every service, made by the aggregates' own
command methods (so each event is what the code records, not hand-written data)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from civitas.cases.domain.case import Case, Channel, DeadlinePolicy, Urgency
from civitas.eventkit import Aggregate, EventStore, NewEvent, SealedName, StreamState
from civitas.funds.domain.accounts import Account, AccountKind
from civitas.funds.domain.expenditures import ApprovalLevel, Expenditure
from civitas.funds.domain.tasks import Task
from civitas.funds.domain.transfers import TransferRecord
from civitas.geography import UnitKind
from civitas.party_orgs.domain.members import AppraisalRating, CardActivityKind, Member
from civitas.party_orgs.domain.orgs import OrgKind, PartyOrg, SeatRole
from civitas.party_orgs.domain.pairings import Pairing
from civitas.party_orgs.domain.units import AdminUnit
from civitas.volunteers.domain.activities import Activity, Brand
from civitas.volunteers.domain.volunteers import CertificateBook, Volunteer

T0 = datetime(2026, 5, 4, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)
SEALED = "pd1:a2V5:Y2lwaGVy"  # the shape of a sealed value; no key behind it here


def named(person: str) -> SealedName:
    return SealedName(person, SEALED)


def party_orgs() -> list[Aggregate]:
    """Units, orgs, members and a pairing, through every party_orgs event."""
    street = AdminUnit.register("QH-01", "大光路街道", 30000, [])
    grid = AdminUnit.register("QH-01-01-G01", "一网格", 900, [])
    street.rename("大光路")
    street.open_service_centre("大光路便民服务中心")
    grid.assign_post("网格长", named("person-1"), None, "巡查")
    grid.vacate_post("网格长")
    committee = PartyOrg.found(
        "org-st", OrgKind.STREET_WORKING_COMMITTEE, "大工委", None, "QH-01", UnitKind.STREET
    )
    community = PartyOrg.found(
        "org-co",
        OrgKind.COMMUNITY_COMMITTEE,
        "社区大党委",
        committee,
        "QH-01-01",
        UnitKind.COMMUNITY,
    )
    organ = PartyOrg.found(
        "org-organ", OrgKind.ORGAN_GENERAL_BRANCH, "机关总支", None, "QH-01", UnitKind.STREET
    )
    branch = PartyOrg.found(
        "org-br", OrgKind.BRANCH, "第一支部", community, "QH-01-01", UnitKind.COMMUNITY
    )
    community.attach_child(branch.id)
    branch.move_under(organ, [])
    community.detach_child(branch.id)
    committee.seat(SeatRole.SECRETARY, named("person-2"), None, None)
    committee.unseat(committee.collect_pending()[-1])
    member = Member.admit("M-0001", SEALED, organ.id, True, "区政府")
    organ.enroll(member.id)
    member.start_transfer(branch.id, T0)
    member.cancel_transfer("写错了")
    member.start_transfer(branch.id, T0)
    member.receive_transfer(T0 + HOUR)
    organ.release(member.id)
    member.report_to_community("QH-01-01")
    member.record_activity("act-1", CardActivityKind.MEETING, "支部会议", 20, T0, T0 + HOUR)
    member.record_feedback("fb-1", 5, "热心", T0 + HOUR)
    member.rate_appraisal(2025, AppraisalRating.EXCELLENT, T0 + HOUR)
    pairing = Pairing("pairing-1")
    pairing.form(organ, community, T0)
    pairing.end("到期")
    leaving = PartyOrg.found("org-old", OrgKind.BRANCH, "旧支部", organ, "QH-01", UnitKind.STREET)
    leaving.dissolve("合并")
    return [street, grid, committee, community, organ, branch, member, pairing, leaving]


def cases() -> list[Case]:
    """Cases through every branch of their lifecycle, and a funding request."""
    policy = DeadlinePolicy.default()

    def registered(case_id: str) -> Case:
        return Case.register(
            case_id,
            Channel.HOTLINE_12345,
            "QH-01-01",
            "大光路12号3栋",
            "楼道灯坏了",
            Urgency.NORMAL,
            "resident-1",
            SEALED,
            SEALED,
            T0,
            policy,
        )

    answered, handled, merged, rejected, withdrawn, funded = (
        registered(f"c{n}") for n in range(1, 7)
    )
    answered.classify("设施", Urgency.LOW, policy)
    answered.answer_on_spot("已告知物业电话", T0 + HOUR)
    handled.classify("设施", Urgency.URGENT, policy)
    handled.file()
    handled.dispatch("QH-01-01-G01", None, named("person-3"), T0 + HOUR)
    handled.reassign("QH-01-01-G02", None, named("person-4"), "转二网格")
    handled.return_to_sender("不属本网格")
    handled.dispatch("QH-01-01-G03", None, named("person-4"), T0 + 2 * HOUR)
    handled.accept(named("person-4"))
    handled.note_progress("已联系物业")
    handled.open_mediation(named("person-5"))
    handled.hold_mediation_session("双方到场")
    handled.conclude_mediation(True, "三日内修复")
    handled.supervise(T0 + timedelta(days=30))
    handled.resolve("已修复", T0 + timedelta(days=31))
    handled.follow_up(2, "不满意")
    handled.reopen("灯又坏了", T0 + timedelta(days=32), policy)
    handled.resolve("已更换", T0 + timedelta(days=33))
    handled.follow_up(5, "满意")
    handled.close(T0 + timedelta(days=34))
    merged.merge_into(answered)
    rejected.reject("不属社区事务")
    withdrawn.withdraw("自行解决")
    funded.classify("设施", Urgency.NORMAL, policy)
    funded.file()
    funded.dispatch("QH-01-01-G01", "org-grid", named("person-3"), T0 + HOUR)
    funded.accept(named("person-3"))
    first = funded.request_funds(50_000, "payee:QH-01-01:repairs", "换灯", "发票")
    funded.record_funding_outcome(first.expenditure_id, True, "")
    second = funded.request_funds(20_000, "payee:QH-01-01:repairs", "再换", "发票")
    funded.record_funding_outcome(second.expenditure_id, False, "预算不足")
    return [answered, handled, merged, rejected, withdrawn, funded]


def volunteers() -> list[Aggregate]:
    """A volunteer through an activity, verified hours and a certificate."""
    volunteer = Volunteer.register("v1", "QH-01-01", ["cooking"], None, "person-6", SEALED, SEALED)
    member = Volunteer.register(
        "v2", "QH-01-01", [], "m1", "person-7", SEALED, SEALED, ["QH-01-01"]
    )
    member.follow_member("QH-01-02", ["QH-01-02"])
    volunteer.suspend("缺勤")
    volunteer.reinstate()
    activity = Activity.create(
        "a1", Brand.ELDERLY_DINING, "银发餐桌", "社区", "QH-01-01", T0, T0 + 2 * HOUR, 10, []
    )
    activity.sign_up(member.id, False, T0 - HOUR)
    activity.cancel(member.id)
    for who in (volunteer.id, member.id):
        activity.sign_up(who, False, T0 - HOUR)
        activity.check_in(who, T0)
        activity.check_out(who, T0 + 2 * HOUR)
    activity.verify_hours(volunteer.id, None, 20, "coordinator-1")
    activity.decline_hours(member.id, "未到岗")
    volunteer.credit_hours(activity.id, 20)
    book = CertificateBook("QH-01-01")
    number = book.number_for(volunteer.id, volunteer.total_tenths)
    volunteer.issue_certificate(number, T0 + 3 * HOUR)
    return [volunteer, member, activity, book]


def funds() -> list[Aggregate]:
    """Accounts, a task, expenditures to each end, a transfer and a closed year."""
    budget = Account.open("source:QH:budget", AccountKind.SOURCE, "QH", "区预算")
    fund = Account.open("fund:QH-01-01:special", AccountKind.FUND, "QH-01-01", "专项资金")
    payee = Account.open("payee:QH-01-01:repairs", AccountKind.PAYEE, "QH-01-01", "维修")
    intended = TransferRecord.intend("t1", budget.id, fund.id, 200_000_00, "年度拨款")
    budget.debit("t1", 200_000_00, fund.id, T0)
    fund.credit("t1", 200_000_00, budget.id, T0)
    task = Task.assign("task-1", budget.id, "QH-01-01", "垃圾分类", 1_000_00)
    task.funded()
    cancelled = Task.assign("task-2", budget.id, "QH-01-01", "停办", 1_000_00)
    cancelled.cancel("取消")
    paid, voided, refused = (
        Expenditure.request(
            f"e{n}",
            "QH-01-01",
            fund.id,
            payee.id,
            500_00,
            "换灯",
            "发票",
            None,
            "clerk-1",
            100_000_00,
        )
        for n in range(1, 4)
    )
    for spent in (paid, voided):
        spent.approve("secretary-1", ApprovalLevel.COMMUNITY)
        spent.mark_reserved()
        fund.reserve(spent.transfer_id, 500_00, payee.id)
    fund.debit(paid.transfer_id, 500_00, payee.id, T0 + HOUR, held_only=True)
    payee.credit(paid.transfer_id, 500_00, fund.id, T0 + HOUR)
    paid.mark_disbursed(T0 + HOUR)
    fund.release(voided.transfer_id, "作废")
    voided.void("重复申请")
    refused.reject("secretary-1", "不合规")
    fund.close_year(2026)
    return [budget, fund, payee, intended, task, cancelled, paid, voided, refused]


HISTORIES = {"party_orgs": party_orgs, "cases": cases, "volunteers": volunteers, "funds": funds}
"""Each publishing service's history, by name."""


async def store_history(store: EventStore, aggregates: Iterable[Aggregate]) -> int:
    """Append each aggregate's recorded events to its stream; how many were stored."""
    stored = 0
    for aggregate in aggregates:
        events = [
            NewEvent(e.event_type, e.to_data(), schema_version=e.schema_version)
            for e in aggregate.collect_pending()
        ]
        await store.append(aggregate.stream_id, events, StreamState.NO_STREAM)
        stored += len(events)
    return stored
