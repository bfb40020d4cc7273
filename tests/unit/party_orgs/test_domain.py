"""party_orgs rules and refusals, on the aggregates alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from civitas.errors import AlreadyExists, InvalidInput, RuleViolation
from civitas.eventkit import UNSEALED, SealedName, registry
from civitas.geography import UnitKind, parse_unit_code
from civitas.party_orgs.domain.members import (
    AppraisalRating,
    CardActivityKind,
    Member,
    add_months,
    member_id_for,
)
from civitas.party_orgs.domain.orgs import (
    BRANCH_CAPACITY,
    CommitteeMemberUnseated,
    OrgKind,
    PartyOrg,
    SeatRole,
    check_parent,
    org_id_for,
)
from civitas.party_orgs.domain.pairings import Pairing
from civitas.party_orgs.domain.units import AdminUnit, GridPostAssigned

NOW = datetime(2026, 3, 10, 9, tzinfo=UTC)


def org(
    kind: OrgKind,
    name: str = "org",
    parent: PartyOrg | None = None,
    unit: tuple[str, UnitKind] = ("QH-01-01", UnitKind.COMMUNITY),
) -> PartyOrg:
    return PartyOrg.found(f"id-{name}", kind, name, parent, unit[0], unit[1])


STREET = ("QH-01", UnitKind.STREET)
GRID = ("QH-01-01-G01", UnitKind.GRID)


# -- units ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind", "parent"),
    [
        ("QH", UnitKind.DISTRICT, None),
        ("QH-03", UnitKind.STREET, "QH"),
        ("QH-03-07", UnitKind.COMMUNITY, "QH-03"),
        ("QH-03-07-G02", UnitKind.GRID, "QH-03-07"),
    ],
)
def test_a_unit_code_names_its_kind_and_parent(
    code: str, kind: UnitKind, parent: str | None
) -> None:
    assert parse_unit_code(code) == (kind, parent)


@pytest.mark.parametrize("code", ["", "qh", "QH-3", "QH-03-7", "QH-03-07-02", "QH-03-07-G", "X"])
def test_a_malformed_unit_code_is_refused(code: str) -> None:
    with pytest.raises(InvalidInput, match="unit code"):
        AdminUnit.register(code, "name", 0, [])


def test_only_a_grid_covers_addresses_and_population_is_bounded() -> None:
    with pytest.raises(InvalidInput, match="only a grid"):
        AdminUnit.register("QH-01-01", "社区", 100, ["大光路1号"])
    for population in (-1, 10_000_001, 2**31, 2**63 - 1):  # int64 in the request
        with pytest.raises(InvalidInput, match="population is from 0 to 10,000,000"):
            AdminUnit.register("QH-01-01", "社区", population, [])
    assert AdminUnit.register("QH-01-01", "社区", 10_000_000, []).population == 10_000_000
    with pytest.raises(InvalidInput, match="name is required"):
        AdminUnit.register("QH-01-01", "  ", 1, [])


def named(name: str) -> SealedName:
    """A holder as the application hands them over: the name sealed under a person id
    (the domain never reads the ciphertext, so any text stands for it here)."""
    return SealedName(f"person-{name}", f"sealed({name})")


def test_a_grid_post_is_held_by_one_person_until_vacated() -> None:
    grid = AdminUnit.register("QH-01-01-G01", "一网格", 900, ["大光路1号"])
    grid.assign_post("网格长", named("王芳"), None, "巡查、收集诉求")
    grid.assign_post("网格长", named("王芳"), None, "巡查、收集诉求")  # a retry changes nothing

    with pytest.raises(RuleViolation, match="held by another person \\(person-王芳\\)"):
        grid.assign_post("网格长", named("李强"), None, "巡查")
    grid.vacate_post("网格长")
    grid.assign_post("网格长", named("李强"), None, "巡查")

    assert grid.posts["网格长"].holder_person == "person-李强"
    assert len(grid.collect_pending()) == 4
    with pytest.raises(RuleViolation, match="not held"):
        grid.vacate_post("楼栋长")


def test_posts_and_seats_written_before_names_were_sealed_still_read() -> None:
    grid = AdminUnit.register("QH-01-01-G01", "一网格", 900, [])
    v1 = {"post": "网格长", "holder": "王芳", "member_id": None, "duty": "巡查"}

    held = registry.decode("GridPostAssigned", 1, v1)
    grid.apply(held)
    in_grid = grid.posts["网格长"]
    grid.vacate_post("网格长")
    vacated = grid.collect_pending()[-1]
    grid.apply(registry.decode("GridPostAssigned", 1, {**v1, "member_id": "m7"}))

    assert isinstance(held, GridPostAssigned)
    assert (held.holder_person, held.holder_ciphertext, held.holder) == (UNSEALED, None, "王芳")
    assert in_grid == held
    assert "王芳" not in str(vacated.to_data())  # the plain name goes no further
    assert grid.posts["网格长"].holder_person == "m7"  # a member is their own person


def test_seats_written_before_names_were_sealed_are_unseated_by_their_name_alone() -> None:
    committee = org(OrgKind.STREET_WORKING_COMMITTEE, "top", unit=STREET)
    for holder, member in [("张书记", "m1"), ("王委员", None), ("李委员", None)]:
        role = "secretary" if member else "member"
        v1 = {"role": role, "holder": holder, "member_id": member, "stationed_unit": None}
        committee.apply(registry.decode("CommitteeMemberSeated", 1, v1))
    v1_unseat = {"role": "secretary", "holder": "张书记"}

    committee.apply(registry.decode("CommitteeMemberUnseated", 1, v1_unseat))
    li = next(s for s in committee.seats if s.holder == "李委员")
    committee.unseat(li)
    unseated = committee.collect_pending()[-1]
    again = {"role": "member", "holder": "张书记", "member_id": "m1", "stationed_unit": None}
    committee.apply(registry.decode("CommitteeMemberSeated", 1, again))

    assert isinstance(unseated, CommitteeMemberUnseated)
    assert (unseated.holder_person, unseated.holder) == (UNSEALED, "李委员")
    assert [s.holder for s in committee.seats] == ["王委员", "张书记"]


def test_posts_belong_to_grids_and_service_centres_to_streets() -> None:
    community = AdminUnit.register("QH-01-01", "社区", 5000, [])
    street = AdminUnit.register("QH-01", "大光路街道", 60000, [])

    with pytest.raises(RuleViolation, match="posts belong to grids"):
        community.assign_post("网格长", named("王芳"), None, "巡查")
    with pytest.raises(RuleViolation, match="only a street"):
        community.open_service_centre("中心")
    street.open_service_centre("大光路街道为民服务中心")
    with pytest.raises(RuleViolation, match="already has"):
        street.open_service_centre("大光路街道为民服务中心")


# -- orgs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "parent_kind"),
    [
        (OrgKind.COMMUNITY_COMMITTEE, None),
        (OrgKind.GRID_BRANCH, OrgKind.STREET_WORKING_COMMITTEE),
        (OrgKind.BRANCH, OrgKind.GRID_BRANCH),
        (OrgKind.STREET_WORKING_COMMITTEE, OrgKind.COMMUNITY_COMMITTEE),
    ],
)
def test_a_kind_sits_only_under_the_kinds_it_may(
    kind: OrgKind, parent_kind: OrgKind | None
) -> None:
    with pytest.raises(RuleViolation, match="cannot sit"):
        check_parent(kind, parent_kind)


def test_founding_under_a_wrong_parent_is_refused() -> None:
    top = org(OrgKind.STREET_WORKING_COMMITTEE, "top", unit=STREET)

    with pytest.raises(RuleViolation, match="a grid_branch cannot sit under a street_working"):
        org(OrgKind.GRID_BRANCH, "grid", top, GRID)


def test_an_org_is_bound_to_the_kind_of_unit_its_kind_needs() -> None:
    committee = org(OrgKind.STREET_WORKING_COMMITTEE, "大工委", unit=STREET)
    community = org(
        OrgKind.COMMUNITY_COMMITTEE, "社区大党委", committee, ("QH-01-01", UnitKind.COMMUNITY)
    )

    with pytest.raises(RuleViolation, match="bound to a grid"):
        org(OrgKind.GRID_BRANCH, "网格支部", community, ("QH-01-01", UnitKind.COMMUNITY))
    assert org(OrgKind.GRID_BRANCH, "网格支部", community, GRID).parent_id == community.id


def test_a_grid_branch_has_an_id_derived_from_its_grid() -> None:
    # pinned: a change to how ids derive would orphan every stored grid branch's stream
    assert org_id_for(OrgKind.GRID_BRANCH, "QH-01-01-G01") == "f96384af-0620-5dbb-827e-35cbdcdafbb6"
    assert org_id_for(OrgKind.GRID_BRANCH, "QH-01-01-G01") != org_id_for(
        OrgKind.GRID_BRANCH, "QH-01-01-G02"
    )
    assert org_id_for(OrgKind.BRANCH, "QH-01-01") is None


def test_moving_an_org_under_its_own_descendant_is_refused() -> None:
    top = org(OrgKind.STREET_WORKING_COMMITTEE, "top", unit=STREET)
    community = org(OrgKind.COMMUNITY_COMMITTEE, "community", top)

    with pytest.raises(RuleViolation, match="cycle"):
        top.move_under(community, ancestors_of_new_parent=[top.id])
    with pytest.raises(RuleViolation, match="cycle"):
        community.move_under(community, ancestors_of_new_parent=[top.id])


def test_a_branch_holds_at_most_fifty_members() -> None:
    branch = org(OrgKind.BRANCH, "branch", org(OrgKind.ORGAN_GENERAL_BRANCH, "organ", unit=STREET))
    for n in range(BRANCH_CAPACITY):
        branch.enroll(f"m{n}")
    branch.enroll("m0")  # already on the roster: nothing happens

    with pytest.raises(RuleViolation, match="50 members"):
        branch.enroll("one-too-many")
    assert len(branch.members) == BRANCH_CAPACITY


def test_a_committee_holds_no_members_directly() -> None:
    with pytest.raises(RuleViolation, match="holds no members"):
        org(OrgKind.STREET_WORKING_COMMITTEE, "top", unit=STREET).enroll("m1")


def test_an_org_is_dissolved_only_when_it_has_no_members_and_no_children() -> None:
    organ = org(OrgKind.ORGAN_GENERAL_BRANCH, "organ", unit=STREET)
    organ.attach_child("child")
    organ.enroll("m1")

    with pytest.raises(RuleViolation, match="1 members"):
        organ.dissolve("merged")
    organ.release("m1")
    with pytest.raises(RuleViolation, match="organizations under it"):
        organ.dissolve("merged")
    organ.detach_child("child")
    organ.dissolve("merged")

    assert organ.dissolved
    with pytest.raises(RuleViolation, match="dissolved"):
        organ.enroll("m2")


def test_one_secretary_per_committee_and_part_time_members_name_their_unit() -> None:
    committee = org(
        OrgKind.COMMUNITY_COMMITTEE,
        "社区大党委",
        org(OrgKind.STREET_WORKING_COMMITTEE, "top", unit=STREET),
    )
    committee.seat(SeatRole.SECRETARY, named("张书记"), None, None)

    with pytest.raises(RuleViolation, match="secretary already"):
        committee.seat(SeatRole.SECRETARY, named("李书记"), None, None)
    with pytest.raises(InvalidInput, match="stationed unit"):
        committee.seat(SeatRole.PART_TIME_MEMBER, named("赵委员"), None, None)
    committee.seat(SeatRole.PART_TIME_MEMBER, named("赵委员"), None, "区供电公司")
    secretary = committee.seats[0]
    committee.unseat(secretary)
    with pytest.raises(RuleViolation, match="not held"):
        committee.unseat(secretary)

    assert [(s.role, s.holder_person) for s in committee.seats] == [
        (SeatRole.PART_TIME_MEMBER, "person-赵委员")
    ]


# -- members --------------------------------------------------------------------------


def member(working: bool = True) -> Member:
    return Member.admit("32010400123", "pd1:x:y", "org-a", working, "区财政局" if working else None)


def test_a_member_id_derives_from_the_member_number() -> None:
    assert member().id == member_id_for("32010400123")


def test_a_transfer_letter_is_valid_three_months() -> None:
    m = member()
    m.start_transfer("org-b", NOW)

    assert m.transfer is not None
    assert m.transfer.letter_expires_at == datetime(2026, 6, 10, 9, tzinfo=UTC)
    with pytest.raises(RuleViolation, match="expired on 2026-06-10"):
        m.receive_transfer(NOW + timedelta(days=93))
    m.receive_transfer(NOW + timedelta(days=92))
    assert (m.org_id, m.transfer) == ("org-b", None)


def test_a_transfer_is_received_or_cancelled_once() -> None:
    m = member()
    with pytest.raises(RuleViolation, match="no transfer"):
        m.receive_transfer(NOW)
    m.start_transfer("org-b", NOW)
    with pytest.raises(RuleViolation, match="under way already"):
        m.start_transfer("org-c", NOW)
    m.cancel_transfer("家庭原因")
    with pytest.raises(RuleViolation, match="no transfer"):
        m.cancel_transfer("again")
    with pytest.raises(RuleViolation, match="belongs to that"):
        m.start_transfer("org-a", NOW)


def test_add_months_keeps_the_day_or_takes_the_last_of_the_month() -> None:
    assert add_months(datetime(2026, 11, 30, tzinfo=UTC), 3) == datetime(2027, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2026, 1, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)


def test_only_a_working_member_reports_to_a_residence_community() -> None:
    with pytest.raises(RuleViolation, match="only a working member"):
        member(working=False).report_to_community("QH-01-01")
    with pytest.raises(InvalidInput, match="employer"):
        Member.admit("1", "pd1:x:y", "org-a", True, None)
    m = member()
    m.report_to_community("QH-01-01")
    assert m.residence_community == "QH-01-01"


def test_the_card_records_an_activity_once_and_refuses_impossible_ones() -> None:
    m = member()
    m.record_activity("vol-1", CardActivityKind.VOLUNTEER_SERVICE, "银发餐桌", 25, NOW, NOW)
    m.record_activity("vol-1", CardActivityKind.VOLUNTEER_SERVICE, "银发餐桌", 25, NOW, NOW)

    with pytest.raises(InvalidInput, match="between 0 and 24"):
        m.record_activity("vol-2", CardActivityKind.MEETING, "会议", 241, NOW, NOW)
    with pytest.raises(InvalidInput, match="until now"):
        m.record_activity(
            "vol-3", CardActivityKind.MEETING, "会议", 10, NOW + timedelta(days=1), NOW
        )
    with pytest.raises(InvalidInput, match="from 2000"):
        m.record_activity(
            "vol-4", CardActivityKind.MEETING, "会议", 10, datetime.min.replace(tzinfo=UTC), NOW
        )
    assert list(m.activities) == ["vol-1"]


@pytest.mark.parametrize(
    "change",
    [
        {"kind": CardActivityKind.MEETING},
        {"description": "别的活动"},
        {"tenths_of_hours": 240},
        {"occurred_at": NOW - timedelta(hours=1)},
    ],
)
def test_a_card_activity_id_with_other_content_is_refused_and_nothing_recorded(
    change: dict[str, object],
) -> None:
    m = member()
    first = {
        "activity_id": "vol-1",
        "kind": CardActivityKind.VOLUNTEER_SERVICE,
        "description": "银发餐桌",
        "tenths_of_hours": 25,
        "occurred_at": NOW,
    }
    m.record_activity(**first, now=NOW)  # type: ignore[arg-type]
    m.mark_saved()

    with pytest.raises(AlreadyExists, match="card activity id 'vol-1'"):
        m.record_activity(**{**first, **change}, now=NOW)  # type: ignore[arg-type]
    m.record_activity(**{**first, "description": " 银发餐桌 "}, now=NOW)  # type: ignore[arg-type]

    assert m.collect_pending() == []
    assert m.activities["vol-1"].tenths_of_hours == 25


def test_a_feedback_id_with_another_rating_or_comment_is_refused() -> None:
    m = member()
    m.record_feedback("f1", 5, "热心", NOW)
    m.mark_saved()

    for rating, comment in [(4, "热心"), (5, "一般")]:
        with pytest.raises(AlreadyExists, match="feedback id 'f1'"):
            m.record_feedback("f1", rating, comment, NOW + timedelta(days=1))
    m.record_feedback("f1", 5, "热心", NOW + timedelta(days=1))  # delivered again

    assert m.collect_pending() == []
    assert (m.feedback["f1"].rating, m.feedback["f1"].recorded_at) == (5, NOW)


def test_feedback_is_rated_one_to_five_and_appraisals_only_for_past_years() -> None:
    m = member()
    with pytest.raises(InvalidInput, match="from 1 to 5"):
        m.record_feedback("f1", 6, "", NOW)
    m.record_feedback("f1", 5, "热心", NOW)
    with pytest.raises(InvalidInput, match="past or the current year"):
        m.rate_appraisal(2027, AppraisalRating.EXCELLENT, NOW)
    m.rate_appraisal(2025, AppraisalRating.EXCELLENT, NOW)
    assert (m.feedback["f1"].rating, m.appraisals) == (5, {2025: AppraisalRating.EXCELLENT})


def test_a_member_snapshot_restores_the_same_state() -> None:
    m = member()
    m.start_transfer("org-b", NOW)
    m.record_activity("vol-1", CardActivityKind.VOLUNTEER_SERVICE, "放学来吧", 20, NOW, NOW)
    m.record_feedback("f1", 4, "好", NOW)
    m.rate_appraisal(2025, AppraisalRating.COMPETENT, NOW)

    restored = Member(m.id)
    restored.restore_state(m.snapshot_state())

    assert restored.snapshot_state() == m.snapshot_state()


# -- pairings ---------------------------------------------------------------------------


def test_a_pairing_joins_an_organ_org_and_a_community_committee() -> None:
    organ = org(OrgKind.ORGAN_GENERAL_BRANCH, "区财政局机关总支", unit=STREET)
    community = org(
        OrgKind.COMMUNITY_COMMITTEE,
        "社区大党委",
        org(OrgKind.STREET_WORKING_COMMITTEE, "top", unit=STREET),
    )
    pairing = Pairing("p1")

    with pytest.raises(RuleViolation, match="not an organ"):
        pairing.form(community, community, NOW)
    with pytest.raises(RuleViolation, match="not a community"):
        pairing.form(organ, organ, NOW)
    pairing.form(organ, community, NOW)
    pairing.end("年度结束")
    with pytest.raises(RuleViolation, match="ended already"):
        pairing.end("again")
    assert not pairing.active
