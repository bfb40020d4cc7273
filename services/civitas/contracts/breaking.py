"""What ``buf breaking`` is for protos, for events: the classes against the recorded schemas.

A consumer holds data of every version ever published, and the schema it was told.
So, for a (type, version) already recorded, a change that old data or an old reader
would not survive needs a new schema version with an upcaster instead: a field removed,
retyped, made required or added as required, an enum value removed, or its recorded
meaning (its description) changed. A new version needs an upcaster from each one before
it; a type may not disappear; versions never go back. Added optional fields and new
types pass: no published schema forbids properties it does not name (a tolerant
reader's, :func:`civitas.eventkit.schemas.tolerant`), so a consumer that holds the
schema from before a field was added still accepts the data with it.
``python -m civitas.contracts.breaking`` runs it for every publisher (``make
events-breaking``, in ``make check``); ``make events-baseline`` moves the record.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from civitas.eventkit import registry
from civitas.eventkit.schemas import inlined

from .schemas import Schemas, current, publishers, recorded

HasUpcaster = Callable[[str, int], bool]
_WORDS = {"title", "description", "default", "examples"}  # no part of a value's shape


def breaking_changes(before: Schemas, now: Schemas, has_upcaster: HasUpcaster) -> list[str]:
    """Every breaking change from the recorded schemas ``before`` to the classes' ``now``,
    each naming the event (and the field)."""
    found = []
    versions: dict[str, list[int]] = {}
    for event_type, version in sorted(before):
        versions.setdefault(event_type, []).append(version)
    latest = {event_type: version for event_type, version in now}
    for event_type, recorded_versions in versions.items():
        if event_type not in latest:
            found.append(
                f"{event_type}: event type removed (recorded up to v{max(recorded_versions)})"
            )
            continue
        found += _versions(event_type, recorded_versions, latest[event_type], has_upcaster)
    for key, schema in sorted(now.items()):
        if key in before:
            found += [f"{key[0]} v{key[1]}: {change}" for change in _changes(before[key], schema)]
    return found


def _versions(event_type: str, recorded: list[int], version: int, has: HasUpcaster) -> list[str]:
    if version < max(recorded):
        return [f"{event_type}: schema version went back from v{max(recorded)} to v{version}"]
    return [
        f"{event_type} v{old}: no upcaster to v{old + 1}"
        for old in range(min(recorded), version)
        if not has(event_type, old)
    ]


def _changes(before: Mapping[str, Any], now: Mapping[str, Any]) -> Iterator[str]:
    before, now = inlined(before), inlined(now)
    old_fields, new_fields = before.get("properties", {}), now.get("properties", {})
    old_required, new_required = set(before.get("required", ())), set(now.get("required", ()))
    for name in sorted(old_fields.keys() | new_fields.keys()):
        if name not in new_fields:
            yield f"field {name!r} removed"
        elif name not in old_fields:
            if name in new_required:
                yield f"field {name!r} added as required (data recorded without it fails)"
        else:
            old, new = old_fields[name], new_fields[name]
            yield from _field(name, _shape(old), _shape(new))
            if name in new_required - old_required:
                yield f"field {name!r} made required"
            if old.get("description") != new.get("description"):
                yield f"field {name!r}: meaning changed (its description)"


def _field(name: str, old: Any, new: Any) -> Iterator[str]:
    old_values, new_values = _enum(old), _enum(new)
    for value in sorted(old_values - new_values, key=str):
        yield f"field {name!r}: enum value {value!r} removed"
    if _without_enum(old) != _without_enum(new):
        yield f"field {name!r} retyped: {_text(old)} -> {_text(new)}"


def _shape(schema: Any) -> Any:
    """A schema's shape alone: words (title, description, default) left out, so that two
    schemas compare by what values they accept."""
    if isinstance(schema, list):
        return [_shape(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: _shape(v) for k, v in schema.items() if k not in _WORDS}


def _enum(shape: Any) -> set[Any]:
    """The enum values a field's shape allows (through ``anyOf``, for an optional one)."""
    if not isinstance(shape, dict):
        return set()
    values = set(shape.get("enum", ()))
    for option in shape.get("anyOf", ()):
        values |= _enum(option)
    return values


def _without_enum(shape: Any) -> Any:
    if not isinstance(shape, dict):
        return shape
    kept = {k: v for k, v in shape.items() if k != "enum"}
    if "anyOf" in kept:
        kept["anyOf"] = [_without_enum(option) for option in kept["anyOf"]]
    return kept


def _text(shape: Any) -> str:
    return json.dumps(shape, sort_keys=True, ensure_ascii=False)


def _has_upcaster(event_type: str, version: int) -> bool:
    return registry.upcaster_of(event_type, version) is not None


def main() -> int:
    """Check every publisher's classes against its recorded schemas; 1 when one breaks."""
    broken = 0
    for service in publishers():
        changes = breaking_changes(recorded(service), current(service), _has_upcaster)
        for change in changes:
            sys.stderr.write(f"{service}: {change}\n")
        broken += len(changes)
    if broken:
        sys.stderr.write(
            f"{broken} breaking change(s) to published events: give the event a new "
            "schema_version and an upcaster, or move the baseline on purpose "
            "(`make events-baseline`)\n"
        )
        return 1
    sys.stdout.write("events: no breaking change against the recorded schemas\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
