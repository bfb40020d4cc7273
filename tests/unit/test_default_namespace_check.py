"""The session check that no test writes to the default namespace names what grew."""

from __future__ import annotations

from tests.support.default_namespace import commits_since, writes_since


def test_a_topic_that_grew_and_a_new_one_are_named_with_what_was_written() -> None:
    before = {"civitas.cases.events.v1": 40, "civitas.funds.events.v1": 7}
    after = {"civitas.cases.events.v1": 52, "civitas.funds.events.v1": 7, "civitas.dlq.x": 3}

    assert writes_since(before, after) == [
        "civitas.cases.events.v1: +12 messages",
        "civitas.dlq.x: a new topic, +3 messages",
    ]


def test_nothing_written_is_nothing_to_say() -> None:
    sizes = {"civitas.cases.events.v1": 40}

    assert writes_since(sizes, dict(sizes)) == []


def test_a_group_that_committed_and_a_new_one_are_named_with_what_they_committed() -> None:
    before = {"civitas.insights_cases": 40, "civitas.funds.case_requests": 7}
    after = {"civitas.insights_cases": 52, "civitas.funds.case_requests": 7, "civitas.x": 3}

    assert commits_since(before, after) == [
        "consumer group civitas.insights_cases: committed +12",
        "consumer group civitas.x: new, committed +3",
    ]
    assert commits_since(after, dict(after)) == []
