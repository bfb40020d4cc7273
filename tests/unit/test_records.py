import uuid
from datetime import UTC, datetime

import pytest

from civitas.eventkit import RecordedEvent, split_stream_id, stream_parts
from civitas.eventkit.errors import InvalidStreamName


def recorded(stream_id: str) -> RecordedEvent:
    return RecordedEvent(
        uuid.uuid4(), stream_id, 0, 1, "Happened", 1, datetime.now(UTC), None, None, None, {}, b""
    )


def test_a_record_names_its_category_and_its_aggregate_id_even_when_the_id_holds_dashes() -> None:
    event = recorded("case-6f1c2d3e-0000-4000-8000-000000000000")
    assert event.category == "case"
    assert event.aggregate_id == "6f1c2d3e-0000-4000-8000-000000000000"
    assert (event.category, event.aggregate_id) == split_stream_id(event.stream_id)


def test_only_split_stream_id_refuses_a_stream_id_that_is_no_category_and_id() -> None:
    assert stream_parts("Case") == ("Case", "")
    with pytest.raises(InvalidStreamName):
        split_stream_id("Case")
