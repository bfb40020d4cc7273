"""Conversions every gRPC edge needs: enums, ids, timestamps, with clear errors."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from civitas.errors import InvalidInput
from civitas.eventkit.ids import parse_uuid

E = TypeVar("E", bound=enum.StrEnum)


def enum_in(value: int, proto_enum: Any, prefix: str, domain: type[E], field: str) -> E:
    """A proto enum value as the domain's enum; UNSPECIFIED or unknown is bad input."""
    name = proto_enum.Name(value) if value in proto_enum.values() else ""
    if not name or name.endswith("_UNSPECIFIED"):
        raise InvalidInput(f"{field} is required")
    return domain(name.removeprefix(prefix).lower())


def enum_out(value: enum.StrEnum, proto_enum: Any, prefix: str) -> Any:
    """The domain's enum as the proto enum value of the same name."""
    return proto_enum.Value(prefix + value.value.upper())


def uuid_in(value: str, field: str) -> str:
    """A required id field holding a UUID (hex digits and dashes, nothing else), in
    lower case."""
    if not value:
        raise InvalidInput(f"{field} is required")
    parsed = parse_uuid(value)
    if parsed is None:
        raise InvalidInput(f"{field} {value!r} is not an id (a UUID)")
    return parsed


def timestamp_out(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def timestamp_in(stamp: Timestamp) -> datetime:
    """A request's timestamp; one outside the years 1–9999 is bad input."""
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(f"timestamp {stamp.seconds}s is out of range") from None
