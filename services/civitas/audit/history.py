"""An aggregate's history for auditors: its state at a moment or a revision, and
every event up to then with actor, time and correlation id."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from civitas.errors import InvalidInput, NotFound
from civitas.eventkit import (
    Aggregate,
    AggregateNotFound,
    EventStore,
    InvalidStreamName,
    RecordedEvent,
    Repository,
    split_stream_id,
)
from civitas.eventkit.audit import ChainReport


@dataclass(frozen=True)
class History:
    stream_id: str
    version: int
    state: dict[str, Any]
    events: list[RecordedEvent]


def jsonable(value: Any) -> Any:
    """Aggregate state as JSON-ready data: enums by value, sets sorted, times ISO."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=str)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def state_of(aggregate: Aggregate) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in vars(aggregate).items() if not k.startswith("_")}


def state_json(state: dict[str, Any]) -> str:
    return json.dumps(state, ensure_ascii=False, sort_keys=True, default=str)


class Histories:
    """Histories of the aggregates one store keeps."""

    def __init__(self, store: EventStore, aggregates: Iterable[type[Aggregate]]) -> None:
        self.store = store
        self.repositories = {a.category: Repository(store, a) for a in aggregates}

    async def verify(self) -> ChainReport:
        """Both hash chains of the store, checked from the rows as stored."""
        return await self.store.verify()

    async def history(
        self, stream_id: str, *, as_of: datetime | None = None, version: int | None = None
    ) -> History:
        try:
            category, aggregate_id = split_stream_id(stream_id)
        except InvalidStreamName as bad:
            raise InvalidInput(str(bad)) from None
        repository = self.repositories.get(category)
        if repository is None:
            known = ", ".join(sorted(self.repositories))
            raise InvalidInput(f"this store keeps no {category!r} streams (it keeps {known})")
        if version is not None and version < 0:
            raise InvalidInput(f"version is a revision from 0, not {version}")
        if as_of is not None and as_of.tzinfo is None:
            raise InvalidInput("as_of needs a time zone")
        try:
            aggregate = await repository.get_as_of(aggregate_id, version=version, moment=as_of)
        except AggregateNotFound:
            raise NotFound(f"{stream_id} has no events by then") from None
        events = [
            e
            for e in await self.store.read_stream(stream_id)
            if e.stream_version <= aggregate.version
        ]
        return History(stream_id, aggregate.version, state_of(aggregate), events)
