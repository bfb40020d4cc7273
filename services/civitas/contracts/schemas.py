"""The per-service folders of event schemas: what the classes make of them, and what is
recorded (``python -m civitas.contracts.schemas`` writes the classes' view over the
record: ``make events-baseline``)."""

from __future__ import annotations

import json
import sys
from typing import Any

from civitas import catalog
from civitas.eventkit import registry
from civitas.eventkit.schemas import (
    SchemaKey,
    event_schema,
    file_name,
    read_folder,
    tolerant,
    with_upcaster,
)

from . import folder

Schemas = dict[SchemaKey, dict[str, Any]]


def publishers() -> list[str]:
    """The services that publish events (those with a store of their own)."""
    return catalog.event_keepers()


def recorded(service: str) -> Schemas:
    """The schemas committed for ``service``: the baseline."""
    return read_folder(folder(service))


def current(service: str) -> Schemas:
    """The schema of the current version of each of ``service``'s event classes."""
    classes = catalog.spec(service).event_classes()
    return {(c.event_type, c.schema_version): event_schema(c, service) for c in classes}


def proposed(service: str) -> Schemas:
    """What the folder should hold: the current versions, and each older version of a
    current type as recorded (tolerant of properties it does not name, as every
    published schema is), noting the upcaster that lifts it. A type no class
    declares any more is left out (moving the baseline accepts its removal)."""
    now = current(service)
    types = {event_type for event_type, _ in now}
    older = {k: tolerant(s) for k, s in recorded(service).items() if k[0] in types and k not in now}
    for (event_type, version), schema in older.items():
        upcaster = registry.upcaster_of(event_type, version)
        if upcaster is not None:
            older[(event_type, version)] = with_upcaster(schema, upcaster)
    return now | older


def dumps(schema: dict[str, Any]) -> str:
    """A schema file's text: stable, so that a diff shows only what changed."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(service: str, schemas: Schemas) -> None:
    """Make ``service``'s folder hold exactly ``schemas``."""
    target = folder(service)
    target.mkdir(parents=True, exist_ok=True)
    names = {file_name(*key): schema for key, schema in schemas.items()}
    for stale in target.glob("*.json"):
        if stale.name not in names:
            stale.unlink()
    for name, schema in names.items():
        (target / name).write_text(dumps(schema), encoding="utf-8")


def main() -> None:
    """Move the baseline: write every publisher's folder from its classes."""
    for service in publishers():
        schemas = proposed(service)
        write(service, schemas)
        sys.stdout.write(f"{service}: {len(schemas)} schemas in {folder(service).name}/\n")


if __name__ == "__main__":
    main()
