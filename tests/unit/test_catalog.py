"""The catalog of services: each declared once, read by everything that lists services."""

from __future__ import annotations

import subprocess
import sys

import pytest

from civitas import catalog
from civitas.chassis.catalog import ServiceSpec, load


def test_lists_every_service_in_start_order_with_its_ports() -> None:
    assert [(s.name, s.grpc_port, s.metrics_port) for s in catalog.SERVICES] == [
        ("party_orgs", 50051, 9101),
        ("cases", 50052, 9102),
        ("volunteers", 50053, 9103),
        ("funds", 50054, 9104),
        ("insights", 50055, 9105),
    ]
    assert catalog.spec("insights").http_port == 8080


def test_says_who_keeps_events_and_personal_data() -> None:
    assert catalog.event_keepers() == ["party_orgs", "cases", "volunteers", "funds"]
    assert catalog.personal_data_keepers() == ["party_orgs", "cases", "volunteers"]


def test_an_unknown_service_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(KeyError, match="party_orgs, cases"):
        catalog.spec("parks")


@pytest.mark.parametrize("spec", catalog.SERVICES, ids=lambda s: s.name)
def test_each_declaration_names_what_the_service_runs(spec: ServiceSpec) -> None:
    for aggregate in spec.aggregate_types():
        assert aggregate.__module__.startswith(f"civitas.{spec.name}.")
    for projected in spec.projections:
        assert projected.projection().name == projected.name
        assert projected.source in catalog.names()
    for reacting in spec.process_managers:
        assert load(reacting.manager).name == reacting.name
        assert spec.source_of(reacting.name) == reacting.source
    assert set(spec.peers) <= set(catalog.names())


@pytest.mark.parametrize("spec", catalog.SERVICES, ids=lambda s: s.name)
def test_each_declaration_names_its_own_generated_stubs_holding_its_service(
    spec: ServiceSpec,
) -> None:
    service = spec.grpc_service()  # imports spec.stubs

    assert spec.stubs.startswith(f"civitas.{spec.name}.v1.")
    assert service.full_name.startswith(f"civitas.{spec.name}.v1.")
    assert service.methods


def test_importing_the_catalog_loads_no_service_runtime() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, civitas.catalog; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    heavy = [m for m in loaded if m.split(".")[0] in ("grpc", "sqlalchemy", "pydantic")]
    assert heavy == []
    assert not [
        m for m in loaded if m.startswith("civitas.") and m.endswith(("domain", "bootstrap"))
    ]
