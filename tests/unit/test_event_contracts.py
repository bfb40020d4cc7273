"""Every event has a published schema of every version; changes that would break a
consumer fail the breaking check; a consumer's check names what does not match."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from uuid import uuid4

import jsonschema
import pytest
from pydantic import BaseModel, ConfigDict, Field

from civitas import catalog
from civitas.contracts import breaking, schemas_of
from civitas.contracts.asyncapi import asyncapi_document
from civitas.contracts.breaking import breaking_changes
from civitas.contracts.schemas import current, proposed, publishers, recorded
from civitas.eventkit import DomainEvent, RecordedEvent, registry
from civitas.eventkit.kafka import encode_event
from civitas.eventkit.schemas import SchemaKey, marked

AT = datetime(2026, 5, 1, 9, tzinfo=UTC)


def test_the_committed_schemas_are_what_the_classes_make() -> None:
    for service in publishers():
        assert recorded(service) == proposed(service), "stale: run `make events-baseline`"


def test_every_event_class_is_published_by_one_service() -> None:
    declared = [cls for spec in catalog.SERVICES for cls in spec.event_classes()]

    assert len(declared) == len(set(declared))
    assert set(declared) == {
        cls for cls in _subclasses(DomainEvent) if cls.__module__.startswith("civitas.")
    }
    for service in publishers():
        assert set(current(service)) <= set(recorded(service))


def test_an_older_version_notes_the_upcaster_that_lifts_it() -> None:
    old = recorded("cases")[("CaseDispatched", 1)]

    assert old["x-civitas-upcaster"]["to_version"] == 2
    assert old["required"] == ["grid_code", "grid_branch_id", "handler", "dispatched_at"]
    for service in publishers():
        for (event_type, version), schema in recorded(service).items():
            older = version < _version_of(event_type)
            assert ("x-civitas-upcaster" in schema) == older, f"{event_type} v{version}"


def test_the_events_as_they_are_break_no_recorded_schema() -> None:
    for service in publishers():
        assert breaking_changes(recorded(service), current(service), _upcasted) == []


class Channel(Enum):
    HOTLINE = "hotline"
    ONLINE = "online"


class Registered(BaseModel):
    community_code: str
    channel: Channel
    note: str | None = Field(default=None, description="what the resident said")


def _schemas(model: type[BaseModel], version: int = 1) -> dict[SchemaKey, dict[str, Any]]:
    return {("Registered", version): marked(model.model_json_schema(), "t", "Registered", version)}


BEFORE = _schemas(Registered)


def _changed(**fields: Any) -> dict[SchemaKey, dict[str, Any]]:
    """The recorded schema of ``Registered`` v1 with its properties changed."""
    schema = json.loads(json.dumps(BEFORE[("Registered", 1)]))
    for name, value in fields.items():
        if value is None:
            del schema["properties"][name]
            schema["required"] = [r for r in schema["required"] if r != name]
        else:
            schema["properties"][name] = value
    return {("Registered", 1): schema}


@pytest.mark.parametrize(
    ("now", "change"),
    [
        (_changed(community_code=None), "Registered v1: field 'community_code' removed"),
        (
            _changed(community_code={"type": "integer"}),
            'Registered v1: field \'community_code\' retyped: {"type": "string"} -> '
            '{"type": "integer"}',
        ),
        (
            _changed(channel={"enum": ["hotline"], "type": "string"}),
            "Registered v1: field 'channel': enum value 'online' removed",
        ),
        (
            _changed(note={"anyOf": [{"type": "string"}, {"type": "null"}], "description": "x"}),
            "Registered v1: field 'note': meaning changed (its description)",
        ),
    ],
)
def test_a_change_of_a_recorded_field_fails_naming_event_and_field(now: Any, change: str) -> None:
    assert breaking_changes(BEFORE, now, _upcasted) == [change]


def test_a_field_made_required_or_added_as_required_fails() -> None:
    required = _changed()
    required[("Registered", 1)]["required"].append("note")
    added = _changed(source={"type": "string"})
    added[("Registered", 1)]["required"].append("source")

    assert breaking_changes(BEFORE, required, _upcasted) == [
        "Registered v1: field 'note' made required"
    ]
    assert breaking_changes(BEFORE, added, _upcasted) == [
        "Registered v1: field 'source' added as required (data recorded without it fails)"
    ]


def test_a_new_version_needs_an_upcaster_from_the_one_before() -> None:
    class RegisteredV2(BaseModel):
        community: str

    now = _schemas(RegisteredV2, version=2)

    assert breaking_changes(BEFORE, now, lambda t, v: False) == ["Registered v1: no upcaster to v2"]
    assert breaking_changes(BEFORE, now, _upcasted) == []
    assert breaking_changes(now, BEFORE, _upcasted) == [
        "Registered: schema version went back from v2 to v1"
    ]


def test_a_removed_type_fails_and_added_optional_fields_and_types_pass() -> None:
    grown = _changed(source={"type": "string"})
    grown[("Closed", 1)] = marked({"type": "object"}, "t", "Closed", 1)

    assert breaking_changes(BEFORE, {}, _upcasted) == [
        "Registered: event type removed (recorded up to v1)"
    ]
    assert breaking_changes(BEFORE, grown, _upcasted) == []


class Opened(BaseModel):
    model_config = ConfigDict(extra="forbid")  # as event classes are

    community_code: str


class OpenedWithNote(Opened):
    note: str | None = None


def test_an_old_schema_accepts_data_carrying_a_field_added_later_as_optional() -> None:
    old = marked(Opened.model_json_schema(), "t", "Opened", 1)
    grown = marked(OpenedWithNote.model_json_schema(), "t", "Opened", 1)

    assert breaking_changes({("Opened", 1): old}, {("Opened", 1): grown}, _upcasted) == []
    jsonschema.validate({"community_code": "QH-01", "note": "new"}, old)  # the reader's copy
    with pytest.raises(jsonschema.ValidationError, match="'community_code' is a required"):
        jsonschema.validate({"note": "new"}, old)  # what it names is still checked


def test_no_published_schema_forbids_fields_it_does_not_name() -> None:
    for service in publishers():
        for key, schema in recorded(service).items():
            assert '"additionalProperties": false' not in json.dumps(schema), key


def _event(event_type: str, version: int, data: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(
        uuid4(), "case-9", 0, 1, event_type, version, AT, "staff", None, None, data, bytes(32)
    )


def test_a_consumer_check_names_the_event_the_field_and_what_is_wrong() -> None:
    cases = schemas_of("cases")
    dispatched = {
        "grid_code": "QH-01-01-G01",
        "grid_branch_id": None,
        "handler_person": "p1",
        "handler_ciphertext": None,
        "dispatched_at": AT.isoformat(),
    }

    assert cases.check(_event("CaseDispatched", 2, dispatched)) is None
    assert cases.check(_event("CaseDispatched", 2, dispatched | {"added_later": 1})) is None
    assert cases.check(_event("CaseDispatched", 2, dispatched | {"grid_code": 7})) == (
        'CaseDispatched v2: data.grid_code: 7 is not of type "string"'
    )
    unnamed = {k: v for k, v in dispatched.items() if k != "handler_person"}
    assert cases.check(_event("CaseDispatched", 2, unnamed)) == (
        'CaseDispatched v2: data: "handler_person" is a required property'
    )
    assert cases.check(_event("CaseDispatched", 3, dispatched)) == "no schema for CaseDispatched v3"
    assert cases.check(_event("FundsReserved", 1, {})) == "no schema for FundsReserved v1"


def test_data_of_an_older_version_is_checked_against_that_version() -> None:
    v1 = {"post": "网格长", "holder": "王芳", "member_id": None, "duty": "巡查"}
    party = schemas_of("party_orgs")

    assert party.check(_event("GridPostAssigned", 1, v1)) is None
    assert party.check(_event("GridPostAssigned", 2, v1)) is not None
    assert registry.decode("GridPostAssigned", 1, v1).schema_version == 2


def test_each_event_type_is_a_message_of_its_topic_that_checks_the_envelope() -> None:
    document = json.loads(asyncapi_document())
    cases = document["channels"]["cases events"]
    event = _event("CaseFiled", 1, {})
    envelope = json.loads(encode_event(event, "store-1")[1])

    assert set(cases["messages"]) == {t for t, _ in recorded("cases")}
    assert document["components"]["messages"]["CaseRegistered"]["name"] == "CaseRegistered"
    _payload_validator(document, "CaseFiled").validate(envelope)
    _payload_validator(document, "CaseFiled").validate(envelope | {"data": {"added": 1}})
    with pytest.raises(jsonschema.ValidationError):  # data is still an object of its schema
        _payload_validator(document, "CaseFiled").validate(envelope | {"data": ["x"]})
    with pytest.raises(jsonschema.ValidationError):
        _payload_validator(document, "CaseClosed").validate(envelope)


def _payload_validator(document: dict[str, Any], message: str) -> jsonschema.Validator:
    root = document | {"$ref": f"#/components/messages/{message}/payload"}
    return jsonschema.Draft202012Validator(root)


def _upcasted(event_type: str, version: int) -> bool:
    return True


def _version_of(event_type: str) -> int:
    return max(v for service in publishers() for t, v in current(service) if t == event_type)


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found | {sub for child in found for sub in _subclasses(child)}


def test_the_check_run_by_make_fails_naming_the_service_event_and_field(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def without_grid_code(service: str) -> dict[SchemaKey, dict[str, Any]]:
        schemas = current(service)
        if service == "cases":
            del schemas[("CaseDispatched", 2)]["properties"]["grid_code"]
        return schemas

    assert breaking.main() == 0
    monkeypatch.setattr(breaking, "current", without_grid_code)

    assert breaking.main() == 1
    assert "cases: CaseDispatched v2: field 'grid_code' removed" in capsys.readouterr().err
