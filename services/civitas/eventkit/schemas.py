"""The JSON Schema of each event type and version, and the check a consumer runs with it.

An event's schema is generated from its class (JSON Schema 2020-12, pydantic's
``model_json_schema``) and marked with the type and version it describes; older
versions, whose classes are gone, note the upcaster that lifts them.

The schemas are a tolerant reader's: they never forbid properties they do not name
(the classes do, pydantic's ``additionalProperties: false``, which is left out). So a
field added as optional to a recorded type and version, which the breaking check lets
through, reaches a consumer that holds the schema from before it without failing its
check; a field removed, retyped or made required does not pass that check.

A consumer loads a folder of such files (``<Type>.v<N>.json``, in any subfolders) and
checks each event's data against the schema of its type and version before handling
it: what it cannot check it does not trust.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema_rs

from .domain import DomainEvent, Upcaster
from .records import RecordedEvent

DIALECT = "https://json-schema.org/draft/2020-12/schema"
TYPE_KEY = "x-civitas-event-type"
VERSION_KEY = "x-civitas-schema-version"
UPCASTER_KEY = "x-civitas-upcaster"

SchemaKey = tuple[str, int]
"""An event type and one of its schema versions."""


def file_name(event_type: str, version: int) -> str:
    """The file a schema is kept in: ``CaseRegistered.v2.json``."""
    return f"{event_type}.v{version}.json"


def schema_id(group: str, event_type: str, version: int) -> str:
    """The schema's ``$id``: a name, not an address (``urn:civitas:event:cases:…``)."""
    return f"urn:civitas:event:{group}:{event_type}:v{version}"


def event_schema(cls: type[DomainEvent], group: str) -> dict[str, Any]:
    """The schema of an event class's current version, in the folder ``group``."""
    return marked(cls.model_json_schema(), group, cls.event_type, cls.schema_version)


def marked(schema: Mapping[str, Any], group: str, event_type: str, version: int) -> dict[str, Any]:
    """A class's schema with the dialect, its ``$id``, type and version."""
    head = {
        "$schema": DIALECT,
        "$id": schema_id(group, event_type, version),
        TYPE_KEY: event_type,
        VERSION_KEY: version,
    }
    return head | {k: v for k, v in tolerant(schema).items() if k not in head}


def tolerant(schema: Any) -> Any:
    """A schema, with every ``additionalProperties: false`` in it (nested models'
    included) left out: what it names is checked, what it does not is let through."""
    if isinstance(schema, list):
        return [tolerant(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {
        k: tolerant(v)
        for k, v in schema.items()
        if not (k == "additionalProperties" and v is False)
    }


def with_upcaster(schema: Mapping[str, Any], upcaster: Upcaster) -> dict[str, Any]:
    """An older version's schema noting the function that lifts its data one version up."""
    version = schema[VERSION_KEY]
    name = f"{upcaster.__module__}:{upcaster.__qualname__}"
    return dict(schema) | {UPCASTER_KEY: {"to_version": version + 1, "function": name}}


def inlined(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with each local ``#/$defs/…`` reference replaced by what it names and
    ``$defs`` left out: one self-contained schema, to embed in another document or to
    compare by shape (event models nest no recursive types)."""
    definitions = schema.get("$defs", {})

    def follow(part: Any) -> Any:
        if isinstance(part, list):
            return [follow(item) for item in part]
        if not isinstance(part, dict):
            return part
        reference = part.get("$ref", "")
        if reference.startswith("#/$defs/"):
            return follow(definitions[reference.removeprefix("#/$defs/")])
        return {k: follow(v) for k, v in part.items() if k != "$defs"}

    result: dict[str, Any] = follow(schema)
    return result


def key_of(schema: Mapping[str, Any]) -> SchemaKey:
    """The type and version a schema describes."""
    return schema[TYPE_KEY], schema[VERSION_KEY]


def read_folder(folder: Path) -> dict[SchemaKey, dict[str, Any]]:
    """Every schema in a folder and its subfolders, by type and version."""
    schemas = {}
    for path in sorted(folder.rglob("*.v*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        schemas[key_of(schema)] = schema
    return schemas


class EventSchemas:
    """The schemas a consumer checks events against, each compiled once when first used."""

    def __init__(self, schemas: Mapping[SchemaKey, Mapping[str, Any]]) -> None:
        self._schemas = dict(schemas)
        self._validators: dict[SchemaKey, jsonschema_rs.Draft202012Validator] = {}

    @classmethod
    def load(cls, folder: Path) -> EventSchemas:
        """The schemas kept in ``folder`` (and its subfolders)."""
        return cls(read_folder(folder))

    def keys(self) -> set[SchemaKey]:
        """Every type and version it can check."""
        return set(self._schemas)

    def check(self, event: RecordedEvent) -> str | None:
        """Why ``event``'s data does not match the schema of its type and version
        (``CaseDispatched v2: data.grid_code: 7 is not of type "string"``, ``no schema for
        CaseDispatched v3``), or None: a consumer's ``check``, whose reason parks it."""
        key = (event.type, event.schema_version)
        validator = self._validators.get(key) or self._compile(key)
        if validator is None:
            return f"no schema for {event.type} v{event.schema_version}"
        if validator.is_valid(event.data):
            return None
        error = next(validator.iter_errors(event.data))
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.instance_path)
        return f"{event.type} v{event.schema_version}: data{where}: {error.message}"

    def _compile(self, key: SchemaKey) -> jsonschema_rs.Draft202012Validator | None:
        schema = self._schemas.get(key)
        if schema is None:
            return None
        validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
        self._validators[key] = validator
        return validator
