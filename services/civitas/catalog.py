"""Every Civitas service, registered once, in start order (insights last: it reads the
others' events). Each declares itself in its own ``spec`` module; a new service is one
line here. Cheap to import: the specs name their runtime by import strings."""

from __future__ import annotations

from civitas.cases.spec import SPEC as CASES
from civitas.chassis.catalog import Projected, ServiceSpec
from civitas.funds.spec import SPEC as FUNDS
from civitas.insights.spec import SPEC as INSIGHTS
from civitas.party_orgs.spec import SPEC as PARTY_ORGS
from civitas.volunteers.spec import SPEC as VOLUNTEERS

SERVICES: tuple[ServiceSpec, ...] = (PARTY_ORGS, CASES, VOLUNTEERS, FUNDS, INSIGHTS)


def names() -> list[str]:
    """Every service's name, in start order."""
    return [spec.name for spec in SERVICES]


def spec(name: str) -> ServiceSpec:
    """The declaration of the service ``name``; a :class:`KeyError` names the known ones."""
    for declared in SERVICES:
        if declared.name == name:
            return declared
    raise KeyError(f"no service {name!r}: one of {', '.join(names())}")


def event_keepers() -> list[str]:
    """The services that keep events of their own (audit, anchors, Kafka topics)."""
    return [s.name for s in SERVICES if s.keeps_events]


def personal_data_keepers() -> list[str]:
    """The services that keep personal data in a vault (``civitas forget`` asks each)."""
    return [s.name for s in SERVICES if s.personal_data]


def projections() -> dict[str, tuple[str, Projected]]:
    """Every projection by name, with the service whose read model it writes."""
    return {p.name: (s.name, p) for s in SERVICES for p in s.projections}
