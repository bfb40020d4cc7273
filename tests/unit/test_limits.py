"""Every value a request carries is bounded before the application sees it."""

from __future__ import annotations

import pytest

from civitas.cases.v1 import cases_pb2
from civitas.chassis.limits import DEFAULT_CHARS, FREE_TEXT_CHARS, check_request
from civitas.errors import InvalidInput
from civitas.party_orgs.v1 import party_orgs_pb2
from civitas.volunteers.v1 import volunteers_pb2


def registering(**changes: object) -> cases_pb2.RegisterCaseRequest:
    fields = {
        "community_code": "QH-01-01",
        "address": "大光路12号",
        "description": "楼道灯坏了\n三楼和四楼",
        "resident_name": "王芳",
        "resident_phone": "13800000000",
    }
    return cases_pb2.RegisterCaseRequest(**{**fields, **changes})


def test_values_within_their_bounds_pass() -> None:
    check_request(registering())
    check_request(registering(description="说" * FREE_TEXT_CHARS))
    check_request(registering(resident_name="王" * DEFAULT_CHARS))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"description": "说" * (FREE_TEXT_CHARS + 1)}, "description is longer than 500"),
        ({"resident_name": "王" * (DEFAULT_CHARS + 1)}, "resident_name is longer than 100"),
        ({"community_code": "QH-01-01\x00"}, "community_code holds a control character"),
        ({"resident_name": "王\n芳"}, "resident_name holds a control character"),
        ({"description": "a\x1bb"}, "description holds a control character"),
        ({"resident_name": "王\u202e芳"}, "resident_name holds a bidirectional"),
    ],
)
def test_a_value_over_its_bound_is_refused_by_name(changes: dict, named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        check_request(registering(**changes))


def test_nested_messages_and_lists_are_bounded_too() -> None:
    feedback = party_orgs_pb2.ResidentFeedback(feedback_id="f1", comment="好" * 501)
    with pytest.raises(InvalidInput, match=r"feedback\.comment is longer"):
        check_request(party_orgs_pb2.RecordResidentFeedbackRequest(feedback=feedback))
    too_many = volunteers_pb2.RegisterVolunteerRequest(skills=["烹饪"] * 51)
    with pytest.raises(InvalidInput, match="skills holds more than 50 values"):
        check_request(too_many)
    long_skill = volunteers_pb2.RegisterVolunteerRequest(skills=["烹饪", "x" * 101])
    with pytest.raises(InvalidInput, match=r"skills\[1\] is longer"):
        check_request(long_skill)
