"""Volunteers and activities: every rule and refusal, on the aggregates alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from civitas.errors import InvalidInput, RuleViolation
from civitas.volunteers.domain.activities import Activity, Brand
from civitas.volunteers.domain.volunteers import (
    CertificateBook,
    Volunteer,
    volunteer_id_for_member,
)

START = datetime(2026, 5, 9, 11, tzinfo=UTC)


def activity(capacity: int = 2) -> Activity:
    return Activity.create(
        "a1",
        Brand.ELDERLY_DINING,
        "银发餐桌·周六午餐",
        "大光路社区",
        "QH-01-01",
        START,
        START + timedelta(hours=2),
        capacity,
        ["烹饪"],
    )


def attended(act: Activity, volunteer: str = "v1", hours: float = 2) -> Activity:
    act.sign_up(volunteer, False, START - timedelta(days=1))
    act.check_in(volunteer, START)
    act.check_out(volunteer, START + timedelta(hours=hours))
    return act


def test_a_member_volunteer_has_an_id_derived_from_the_member() -> None:
    # pinned: a change to how ids derive would orphan every member's volunteer profile
    assert volunteer_id_for_member("m-1") == "4d30a797-c03c-5612-83cc-50679217affd"
    assert volunteer_id_for_member("m-1") != volunteer_id_for_member("m-2")


def test_an_activity_holds_as_many_volunteers_as_it_has_places() -> None:
    act = activity(capacity=2)
    act.sign_up("v1", False, START)
    act.sign_up("v2", False, START)

    with pytest.raises(RuleViolation, match="full"):
        act.sign_up("v3", False, START)
    act.cancel("v2")
    act.sign_up("v3", False, START)  # the cancelled place is free again
    assert act.signed_up == 2
    assert act.roster["v2"].cancelled  # nothing is deleted


def test_no_double_sign_up_none_while_suspended_none_after_the_end() -> None:
    act = activity()
    act.sign_up("v1", False, START)

    with pytest.raises(RuleViolation, match="signed up already"):
        act.sign_up("v1", False, START)
    with pytest.raises(RuleViolation, match="suspended"):
        act.sign_up("v2", True, START)
    with pytest.raises(RuleViolation, match="over"):
        act.sign_up("v2", False, START + timedelta(hours=3))


def test_attendance_runs_in_order_within_the_activity_time() -> None:
    act = activity()
    act.sign_up("v1", False, START)
    with pytest.raises(RuleViolation, match="not checked in"):
        act.check_out("v1", START)
    with pytest.raises(RuleViolation, match="an hour before"):
        act.check_in("v1", START - timedelta(hours=2))
    act.check_in("v1", START)
    with pytest.raises(RuleViolation, match="checked in already"):
        act.check_in("v1", START)
    with pytest.raises(RuleViolation, match="the sign-up stands"):
        act.cancel("v1")
    with pytest.raises(InvalidInput, match="before check-in"):
        act.check_out("v1", START - timedelta(minutes=1))
    with pytest.raises(RuleViolation, match="not signed up"):
        act.check_in("v9", START)


def test_verified_hours_never_exceed_the_hours_attended() -> None:
    act = attended(activity(), hours=1.5)

    with pytest.raises(RuleViolation, match=r"at most the 1\.5 h attended"):
        act.verify_hours("v1", None, 16, "组织者")
    act.verify_hours("v1", "m-1", 15, "组织者")
    with pytest.raises(RuleViolation, match="decided already"):
        act.decline_hours("v1", "重复申报")


def test_a_decline_keeps_its_reason_and_hours_wait_for_check_out() -> None:
    act = activity()
    act.sign_up("v1", False, START)
    act.check_in("v1", START)
    with pytest.raises(RuleViolation, match="after the volunteer checks out"):
        act.verify_hours("v1", None, 10, "组织者")
    act.check_out("v1", START + timedelta(hours=1))
    act.decline_hours("v1", "未实际参与服务")

    assert act.roster["v1"].declined == "未实际参与服务"


def test_bad_activities_are_refused() -> None:
    with pytest.raises(InvalidInput, match="ends after it starts"):
        Activity.create("a", Brand.OTHER, "t", "o", "QH-01-01", START, START, 5, [])
    with pytest.raises(InvalidInput, match="capacity"):
        Activity.create(
            "a", Brand.OTHER, "t", "o", "QH-01-01", START, START + timedelta(hours=1), 0, []
        )
    for start in (datetime(1, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)):
        with pytest.raises(InvalidInput, match="from 2000 to 2099"):
            Activity.create(
                "a", Brand.OTHER, "t", "o", "QH-01-01", start, start + timedelta(hours=1), 5, []
            )


def test_an_activity_describes_what_it_was_created_as() -> None:
    same, other = activity(), activity(capacity=3)

    assert same.describes() == activity().describes()
    assert other.describes() != same.describes()


def volunteer() -> Volunteer:
    return Volunteer.register(
        "v1", "QH-01-01", ["烹饪", "烹饪", "法律"], "m-1", "m-1", "pd1:a", "pd1:b"
    )


def test_the_ledger_credits_an_activity_once_and_certificates_state_the_total() -> None:
    v = volunteer()
    book = CertificateBook("2026")
    with pytest.raises(RuleViolation, match="no verified hours"):
        v.check_can_certify()
    v.credit_hours("a1", 15)
    v.credit_hours("a1", 15)  # delivered again
    v.credit_hours("a2", 20)
    number = book.number_for(v.id, v.total_tenths)
    assert book.number_for(v.id, v.total_tenths) == number  # a retry takes no new number
    v.issue_certificate(number, START)
    with pytest.raises(RuleViolation, match="states this total already"):
        v.check_can_certify()

    assert v.total_tenths == 35
    assert v.skills == ["法律", "烹饪"]
    assert [(c.number, c.total_tenths_of_hours) for c in v.certificates] == [
        ("QH-VOL-2026-000001", 35)
    ]


def test_suspension_is_switched_on_and_off_once_each() -> None:
    v = volunteer()
    v.suspend("多次无故缺席")
    with pytest.raises(RuleViolation, match="suspended already"):
        v.suspend("again")
    v.reinstate()
    with pytest.raises(RuleViolation, match="not suspended"):
        v.reinstate()
    assert not v.suspended


def test_a_members_profile_shows_the_name_to_the_members_units_and_follows_them() -> None:
    v = Volunteer.register(
        "v1", "QH-01-01", [], "m-1", "m-1", "pd1:a", "", ["QH-01-01-G01", "QH-01-01"]
    )
    v.mark_saved()
    v.follow_member("QH-01-01", ["QH-01-01-G01", "QH-01-01", "QH-01-01-G01"])  # no change
    unchanged = v.collect_pending()
    v.follow_member("QH-02-01", ["QH-01-01-G01", "QH-02-01"])

    assert unchanged == []
    assert (v.community_code, v.record_units) == ("QH-02-01", ("QH-01-01-G01", "QH-02-01"))


def test_a_profile_without_member_units_belongs_to_its_community() -> None:
    member_before_units = volunteer()
    someone = Volunteer.register("v2", "QH-01-02", [], None, "p-2", "pd1:a", "pd1:b")

    assert member_before_units.record_units == ("QH-01-01",)
    assert someone.record_units == ("QH-01-02",)
    with pytest.raises(RuleViolation, match="only a party member"):
        someone.follow_member("QH-01-03", ["QH-01-03"])
