"""Domain events and aggregates.

An event is a small immutable fact named in the past tense, declared next to its
aggregate as a :class:`DomainEvent` subclass. Every event class carries a schema
version; an older stored shape is read through upcasters, never rewritten.

An aggregate's command methods check named guards, then :meth:`Aggregate._record`
one event; state changes only in :meth:`Aggregate.apply`, so replaying the events
cannot drift from the command path.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict

from .errors import UnknownEventType

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventRegistry:
    """Maps stored type names to event classes, and holds the upcasters between versions."""

    def __init__(self) -> None:
        self._classes: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: type[DomainEvent]) -> None:
        """Register an event class under its type name; two classes may not share one."""
        known = self._classes.get(cls.event_type)
        if known is not None and _full_name(known) != _full_name(cls):
            raise TypeError(
                f"event type {cls.event_type!r} is taken by {_full_name(known)}; "
                "type names are shared by every service's events"
            )
        self._classes[cls.event_type] = cls

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorate a function that turns data of ``from_version`` into ``from_version + 1``."""

        def register(function: Upcaster) -> Upcaster:
            key = (event_type, from_version)
            if key in self._upcasters:
                raise TypeError(f"an upcaster for {event_type} v{from_version} exists already")
            self._upcasters[key] = function
            return function

        return register

    def upcaster_of(self, event_type: str, from_version: int) -> Upcaster | None:
        """The function that lifts ``event_type`` data of ``from_version`` one version up."""
        return self._upcasters.get((event_type, from_version))

    def decode(self, event_type: str, schema_version: int, data: dict[str, Any]) -> DomainEvent:
        """Build the current event class from stored data, upcasting older shapes."""
        cls = self._classes.get(event_type)
        if cls is None:
            raise UnknownEventType(f"no event class is registered for type {event_type!r}")
        if schema_version > cls.schema_version:
            raise UnknownEventType(
                f"{event_type} v{schema_version} is newer than this code (v{cls.schema_version})"
            )
        for version in range(schema_version, cls.schema_version):
            upcast = self._upcasters.get((event_type, version))
            if upcast is None:
                raise UnknownEventType(f"no upcaster for {event_type} from v{version}")
            data = upcast(dict(data))
        return cls.model_validate(data)


UNSEALED = "unsealed"
"""The person of a name an event of an older schema carried in plaintext, where the
event named no member: never derived from the name, which must not spread further."""


@dataclass(frozen=True, slots=True)
class SealedName:
    """A person's name as the domain holds it: sealed under the person's id, so that
    forgetting the person erases it, and compared by that id, never by the name.
    ``ciphertext`` is None only for a name an event of an older schema carried in
    ``plaintext``, before names were sealed."""

    person_id: str
    ciphertext: str | None
    plaintext: str | None = None


A = typing.TypeVar("A", bound="Aggregate")
E = typing.TypeVar("E", bound="DomainEvent")


def applies(function: Callable[[A, E], None]) -> Callable[[A, E], None]:
    """Mark an aggregate method as the state change for the event class it is annotated with."""
    function.__applies__ = True  # type: ignore[attr-defined]
    return function


def _full_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


registry = EventRegistry()
"""The registry every :class:`DomainEvent` subclass joins when it is defined."""


class DomainEvent(BaseModel):
    """Base of every domain event: immutable, validated, JSON-serializable.

    ``event_type`` defaults to the class name; ``schema_version`` starts at 1 and
    goes up with each change of shape, with an upcaster for the step.
    """

    # An attribute's docstring becomes its description in the published schema: the
    # field's recorded meaning, which the contract check holds to its schema version.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "event_type" not in cls.__dict__:
            cls.event_type = cls.__name__
        registry.register(cls)

    def to_data(self) -> dict[str, Any]:
        """The event's fields as JSON-ready data."""
        return self.model_dump(mode="json")


class Aggregate:
    """Base of every aggregate: a stream of events and the state they build.

    Subclasses set ``category`` (the stream category), write command methods that
    check guards and call :meth:`_record`, and write one handler per event type,
    marked ``@applies`` and annotated with its event class. Set ``snapshot_every`` and
    implement :meth:`snapshot_state` / :meth:`restore_state` to snapshot long streams.
    """

    category: ClassVar[str]
    _appliers: ClassVar[dict[type[DomainEvent], Callable[[Any, Any], None]]]
    snapshot_every: ClassVar[int | None] = None
    snapshot_version: ClassVar[int] = 1

    def __init__(self, aggregate_id: str) -> None:
        self.id = aggregate_id
        self.version = -1
        self._pending: list[DomainEvent] = []

    @property
    def stream_id(self) -> str:
        """The id of this aggregate's stream, ``category-id``."""
        return f"{self.category}-{self.id}"

    @classmethod
    def stream_id_of(cls, aggregate_id: str) -> str:
        """The stream id of the aggregate with this id."""
        return f"{cls.category}-{aggregate_id}"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._appliers = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                if getattr(attribute, "__applies__", False):
                    event_class = typing.get_type_hints(attribute)["event"]
                    cls._appliers[event_class] = attribute

    @classmethod
    def event_classes(cls) -> tuple[type[DomainEvent], ...]:
        """The event classes it records: those its ``@applies`` handlers take."""
        return tuple(cls._appliers)

    def apply(self, event: DomainEvent) -> None:
        """Change state for one event, through the ``@applies`` handler of its class."""
        applier = self._appliers.get(type(event))
        if applier is None:
            raise TypeError(f"{type(self).__name__} has no handler for {type(event).__name__}")
        applier(self, event)

    def _record(self, event: DomainEvent) -> None:
        """Apply a new event and keep it to be saved."""
        self._mutate(event)
        self._pending.append(event)

    def _mutate(self, event: DomainEvent) -> None:
        self.apply(event)
        self.version += 1

    def collect_pending(self) -> list[DomainEvent]:
        """The events recorded since the aggregate was loaded or last saved."""
        return list(self._pending)

    def mark_saved(self) -> None:
        """Forget the pending events once the store has them."""
        self._pending.clear()

    @classmethod
    def replay(
        cls, aggregate_id: str, events: list[DomainEvent], start: Self | None = None
    ) -> Self:
        """Rebuild an aggregate from its events (after an optional snapshot)."""
        aggregate = start if start is not None else cls(aggregate_id)
        for event in events:
            aggregate._mutate(event)
        return aggregate

    def snapshot_state(self) -> dict[str, Any]:
        """The aggregate's state as JSON-ready data (needed when ``snapshot_every`` is set)."""
        raise NotImplementedError(f"{type(self).__name__} does not take snapshots")

    def restore_state(self, state: dict[str, Any]) -> None:
        """Set the state from :meth:`snapshot_state` data."""
        raise NotImplementedError(f"{type(self).__name__} does not take snapshots")
