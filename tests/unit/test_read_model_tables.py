"""Services that share a read-model schema cannot collide, and no table is made by a
racing ``create_all`` (see ``civitas.eventkit.readmodels``).

A service's own tables are those of its projections' metadata; the kernel's tables
(tracking, parking, versions, request log) are shared by every service in a schema,
each row keyed by a name unique per service; a vault is one service's alone."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from civitas import catalog
from civitas.chassis import requests
from civitas.chassis.settings import Locations
from civitas.eventkit import parking, projection, readmodels

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services" / "civitas"
MAKES_TABLES = re.compile(r"\.create_all\(|\bCREATE\s+TABLE\b", re.IGNORECASE)
DDL_ALLOWED = {
    "eventkit/readmodels.py": "the one way read-model tables are made, under the lock",
    "eventkit/postgres.py": "the event store's own schema, under its DDL lock",
    "eventkit/sqlite.py": "the event store's own file",
}
KERNEL_TABLES = {
    # table: the column that says whose row it is (a consumer's name, or the service)
    projection.positions_table: "projection",
    projection.streams_table: "projection",
    parking.parked_table: "consumer",
    parking.origins_table: "consumer",
    readmodels.versions_table: "name",
    requests.request_log: "service",
    requests.request_claims: "service",
}


def service_tables() -> dict[str, set[str]]:
    """Each service's own read-model tables, from its projections' metadata."""
    owned: dict[str, set[str]] = {}
    for spec in catalog.SERVICES:
        tables = owned.setdefault(spec.name, set())
        for projected in spec.projections:
            built = projected.projection()
            for table in built.tables:
                tables.update(table.metadata.tables)
    return owned


def consumer_names() -> dict[str, str]:
    """Every projection's and process manager's name, with its service."""
    named = [(p.name, s.name) for s in catalog.SERVICES for p in s.projections]
    named += [(m.name, s.name) for s in catalog.SERVICES for m in s.process_managers]
    assert len({name for name, _ in named}) == len(named), "a consumer name is used twice"
    return dict(named)


def test_no_service_makes_tables_but_through_the_kernels_locked_function() -> None:
    found = [
        f"{path.relative_to(SERVICES)}:{number}: {line.strip()}"
        for path in sorted(SERVICES.rglob("*.py"))
        if str(path.relative_to(SERVICES)) not in DDL_ALLOWED and "_pb2" not in path.name
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if MAKES_TABLES.search(line)
    ]
    assert found == [], "use civitas.eventkit.readmodels.create_tables: " + "; ".join(found)


def test_the_check_for_tables_made_elsewhere_sees_both_spellings() -> None:
    assert MAKES_TABLES.search("    metadata.create_all(conn)")
    assert MAKES_TABLES.search('conn.exec_driver_sql("create table t (x int)")')
    assert not MAKES_TABLES.search("create_tables(conn, metadata)")


def test_services_own_tables_are_disjoint_and_apart_from_the_kernels() -> None:
    owned = service_tables()
    kernel = {table.name for table in KERNEL_TABLES}
    seen: dict[str, str] = {}
    for service, tables in owned.items():
        for name in tables:
            assert name not in seen, f"{service} and {seen[name]} both make table {name}"
            assert name not in kernel, f"{service} makes {name}, a kernel table"
            seen[name] = service
    assert all(owned[name] for name in ("insights", "funds", "cases", "party_orgs"))


def test_every_projection_lists_every_table_it_makes() -> None:
    # a new version's rebuild drops the projection's tables: none may stay in an old shape
    for spec in catalog.SERVICES:
        for projected in spec.projections:
            built = projected.projection()
            engine = sa.create_engine("sqlite://")
            with engine.begin() as conn:
                built.create(conn)
            made = set(sa.inspect(engine).get_table_names())
            assert made == {table.name for table in built.tables}, projected.name


def test_kernel_tables_are_keyed_by_a_name_unique_per_service() -> None:
    for table, owner in KERNEL_TABLES.items():
        keys = [set(table.primary_key.columns.keys())] + [
            set(c.columns.keys()) for c in table.constraints if isinstance(c, sa.UniqueConstraint)
        ]
        assert any(owner in key for key in keys), table.name
    for consumer, service in consumer_names().items():
        assert consumer.startswith(f"{service}_") or consumer.startswith(f"{service}."), (
            f"{consumer} of {service} must start with its service's name"
        )


def test_consumer_names_fit_the_kernel_tables_key_columns() -> None:
    longest = max(len(name) for name in consumer_names())
    for table, owner in KERNEL_TABLES.items():
        length = table.c[owner].type.length  # type: ignore[attr-defined]
        assert longest <= length, table.name
    assert max(len(name) for name in catalog.names()) <= requests.request_log.c.service.type.length


def test_a_vault_url_without_a_schema_gives_each_service_its_own() -> None:
    # the vault's tables carry no service key: a vault is one service's alone
    env = {"CIVITAS_VAULT_URL": "postgresql://civitas@db/civitas"}
    schemas = {Locations.of(name, env).vault_url for name in catalog.personal_data_keepers()}
    assert len(schemas) == len(catalog.personal_data_keepers())
