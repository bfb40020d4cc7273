"""How a service declares itself: one :class:`ServiceSpec` in its own package
(``civitas/<service>/spec.py``), listed once in :mod:`civitas.catalog`.

A spec is a declaration, cheap to import: what would pull in a service's runtime
(its aggregates, projections and process managers) is named by an import string
(``"civitas.cases.domain.case:Case"``) and loaded only when asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.protobuf.descriptor import ServiceDescriptor

    from civitas.eventkit import Aggregate, DomainEvent, Projection


def load(target: str) -> Any:
    """What an import string ``"package.module:Name"`` names."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True, slots=True)
class Projected:
    """A projection a service runs: its name (``civitas replay <name>``), whose events it
    reads, and the class that builds it."""

    name: str
    source: str
    build: str

    def projection(self) -> Projection:
        """A new instance of the projection."""
        built: Projection = load(self.build)()
        return built


@dataclass(frozen=True, slots=True)
class Reacting:
    """A process manager a service runs: its name and whose events it reacts to."""

    name: str
    source: str
    manager: str


@dataclass(frozen=True, slots=True)
class EventsTopic:
    """How a service's events topic is made: partitions (streams spread over them by
    key; never added later, which would move keys) and retention (-1: kept for ever,
    so that a consumer can be rebuilt from the topic)."""

    partitions: int = 6
    retention_ms: int = -1


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """Everything the platform needs to know about one service, declared once: the
    runner, audit, privacy, replay, the Kafka contracts, insights, the CLI and the
    settings read it instead of keeping lists of their own."""

    name: str
    grpc_port: int
    metrics_port: int
    summary: str
    stubs: str  # its generated protobuf module (``civitas.cases.v1.cases_pb2``)
    aggregates: tuple[str, ...] = ()
    projections: tuple[Projected, ...] = ()
    process_managers: tuple[Reacting, ...] = ()
    personal_data: bool = False
    peers: tuple[str, ...] = ()  # the services it calls over gRPC
    http_port: int | None = None
    events: EventsTopic = EventsTopic()  # its Kafka topics: civitas.chassis.topics

    @property
    def keeps_events(self) -> bool:
        """Whether it has an event store of its own (a service with aggregates does)."""
        return bool(self.aggregates)

    @property
    def module(self) -> str:
        """What ``python -m`` runs to start it as a process."""
        return f"civitas.{self.name}"

    def grpc_service(self) -> ServiceDescriptor:
        """The one gRPC service its stubs declare (imported now): what ``civitas call``
        calls."""
        stubs = importlib.import_module(self.stubs)
        (service,) = stubs.DESCRIPTOR.services_by_name.values()
        found: ServiceDescriptor = service
        return found

    def aggregate_types(self) -> list[type[Aggregate]]:
        """Its aggregates, whose histories auditors may read (imported now)."""
        return [load(target) for target in self.aggregates]

    def event_classes(self) -> list[type[DomainEvent]]:
        """The event classes it publishes, by type name: every one its aggregates record
        (their ``@applies`` handlers), imported now. Its schemas are generated from them."""
        found = {cls for aggregate in self.aggregate_types() for cls in aggregate.event_classes()}
        return sorted(found, key=lambda cls: cls.event_type)

    def source_of(self, process_manager: str) -> str:
        """Whose events the named process manager reacts to."""
        for reacting in self.process_managers:
            if reacting.name == process_manager:
                return reacting.source
        raise KeyError(f"{self.name} declares no process manager {process_manager!r}")
