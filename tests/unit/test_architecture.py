"""The layering, kept true by reading every module's imports (an AST walk, no import).

Seven rules, each a function from one module to the violations it holds:

- a ``domain`` module imports the standard library, pydantic (events are pydantic
  models), the kernel's domain parts and the shared domain vocabulary, nothing else;
- an edge (``grpc_api.py``, ``http.py``) imports no store and no private name, touches
  no private member of another object, and shows no personal data (that is its
  service's views' work, by the one rule);
- a service imports of another service only its generated ``v1`` stubs and what that
  service publishes (``PUBLISHED``);
- a service's layers point down: its views and edges are imported only by its edges
  and its composition root, never by its application, domain, projections or
  process managers;
- a test imports helpers from ``tests/support`` (or ``tests/conftest.py``), not from
  another test module;
- the kernel (``eventkit``) and the chassis import no service;
- the demo (``civitas.demo``) talks to services over gRPC: of a service it imports
  only the generated ``v1`` stubs.

Today's code keeps every rule. ``KNOWN_VIOLATIONS`` is where a violation waiting for a
point of #17 was listed, each with that point; the list only shrinks: a new violation
fails, and so does an entry that no longer happens (remove it).
"""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {"civitas": ROOT / "services" / "civitas", "tests": ROOT / "tests"}

KERNEL_DOMAIN = {
    "civitas.eventkit.domain": "aggregates, events, upcasters, sealed names",
    "civitas.eventkit.ids": "natural ids",
    "civitas.eventkit.errors": "the kernel's errors (AggregateNotFound, ConcurrencyError)",
    "civitas.eventkit.clock": "the injected clock",
}
DOMAIN_VOCABULARY = {
    "civitas.errors": "the domain errors every service raises",
    "civitas.validation": "checks on request values every domain shares",
    "civitas.geography": "unit codes and the one check of a community's code",
    "civitas.cases.lifecycle": "a case's status after each event (standard library only)",
    "civitas.sealing": "what of a case is sealed and what stays clear (split_address)",
    "civitas.funds.postings": "what each funds event does to a balance and its holds",
}
"""Shared modules a domain may import; each is held to the domain rule itself."""
DOMAIN_THIRD_PARTY = {"pydantic": "events are pydantic models, as the kernel's DomainEvent"}

STORES = {
    "civitas.eventkit.store": "the event store port",
    "civitas.eventkit.sqlite": "an event store",
    "civitas.eventkit.postgres": "an event store",
    "civitas.eventkit.kurrentdb": "an event store",
    "civitas.eventkit.memory": "an event store",
    "sqlalchemy": "read models: queries live in views.py or the application",
    "asyncpg": "a PostgreSQL driver",
}
EDGES = {"grpc_api", "http"}
COMPOSITION = {"bootstrap", "__main__"}
PERSONAL_DATA_SHOWN = {
    "civitas.sealing": "which fields of a case are sealed, and a timeline's text by them",
    "civitas.chassis.auth.may_see_personal_data": "the one rule over who sees what",
    "civitas.chassis.auth.HIDDEN": "personal data as a caller who may not see it sees it",
    "civitas.eventkit.personal.ERASED": "personal data once its person is forgotten",
}
SHOWING = {"show", "show_name"}  # the vault's reads for display
"""How personal data is shown to a caller: a service's views use them, an edge never."""

PUBLISHED = {
    "civitas.catalog": "every service's declaration: names, ports, peers",
    "civitas.cases.lifecycle": "cases' event contract: a case's status after each event",
    "civitas.sealing": "cases' event contract: which fields are sealed, one rule over them",
    "civitas.funds.postings": "funds' event contract: what each event books and holds on "
    "its account, and which postings are allocations and payments",
}
"""What a service may import of another service besides its ``v1`` stubs; with
``civitas.<service>.spec`` of every service (its declaration, read by the catalog)."""

TEST_HELPERS = ("tests.support", "tests.conftest")

KNOWN_VIOLATIONS: dict[str, str] = {}
"""Violations that wait for a point of #17, each with that point: empty now, every rule
holds. The list only shrinks (an entry that no longer happens fails the test too)."""


@dataclass(frozen=True)
class Module:
    """One module's name and parsed source."""

    name: str
    tree: ast.Module
    is_package: bool = False

    @classmethod
    def of(cls, name: str, source: str, is_package: bool = False) -> Module:
        return cls(name, ast.parse(source), is_package)

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


def _modules() -> dict[str, Module]:
    found = {}
    for top, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = (top, *path.relative_to(folder).with_suffix("").parts)
            if "v1" in parts or "node_modules" in parts:
                continue  # generated stubs
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            found[name] = Module(name, ast.parse(path.read_text(), str(path)), is_package)
    return found


MODULES = _modules()


@functools.cache
def _reexports(package: str) -> dict[str, str]:
    """The names a package's ``__init__`` takes from its own modules."""
    module = MODULES.get(package)
    if module is None:
        return {}
    return {
        alias.asname or alias.name: target
        for node, target in _from_imports(module)
        for alias in node.names
        if target.startswith(package + ".")
    }


def _from_imports(module: Module) -> Iterator[tuple[ast.ImportFrom, str]]:
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom):
            base = module.package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node, target


def imported_names(module: Module) -> set[str]:
    """Every name ``module`` takes with ``from … import``, as ``module.name``; a name
    taken from a package is followed to the module it comes from."""
    return {
        f"{_reexports(target).get(alias.name, target)}.{alias.name}"
        for node, target in _from_imports(module)
        for alias in node.names
    }


def imports(module: Module) -> set[str]:
    """Every module ``module`` imports, by absolute name; a name taken from a package is
    followed to the module it comes from (``civitas.eventkit.Aggregate`` → its domain)."""
    found = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    for node, target in _from_imports(module):
        names = _reexports(target)
        for alias in node.names:
            if f"{target}.{alias.name}" in MODULES:
                found.add(f"{target}.{alias.name}")
            else:
                found.add(names.get(alias.name, target))
    found.discard("__future__")
    return found


def _within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _service_of(name: str) -> str | None:
    """The service a module belongs to: a package with generated ``v1`` stubs."""
    parts = name.split(".")
    if len(parts) > 1 and parts[0] == "civitas" and (SOURCES["civitas"] / parts[1] / "v1").is_dir():
        return parts[1]
    return None


def domain_rule(module: Module) -> Iterator[str]:
    """A domain module imports the standard library, the kernel's domain parts and the
    shared domain vocabulary (and its own domain package), nothing else."""
    parts = module.name.split(".")
    in_a_domain = parts[0] == "civitas" and parts[2:3] == ["domain"]
    if not in_a_domain and module.name not in KERNEL_DOMAIN | DOMAIN_VOCABULARY:
        return
    own_domain = ".".join(parts[:3]) if in_a_domain else module.name
    for target in sorted(imports(module)):
        top = target.partition(".")[0]
        if (
            top in sys.stdlib_module_names
            or top in DOMAIN_THIRD_PARTY
            or target in KERNEL_DOMAIN
            or target in DOMAIN_VOCABULARY
            or _within(target, own_domain)
        ):
            continue
        yield f"domain: {module.name} imports {target}"


def edge_rule(module: Module) -> Iterator[str]:
    """An edge imports no store and no private name, touches no private member of
    another object, and shows no personal data (its service's views do)."""
    if module.name.rpartition(".")[2] not in EDGES or not module.name.startswith("civitas."):
        return
    for target in sorted(imports(module)):
        if _within(target, *STORES, *PERSONAL_DATA_SHOWN):
            yield f"edge: {module.name} imports {target}"
    for name in sorted(imported_names(module)):
        private = name.rpartition(".")[2].startswith("_")
        if private or name in PERSONAL_DATA_SHOWN:
            yield f"edge: {module.name} imports {name}"
    shows = {ast.unparse(node) for node in ast.walk(module.tree) if _shows(node)}
    for call in sorted(shows):
        yield f"edge: {module.name} shows personal data: {call}"
    touched = {
        f"{ast.unparse(node.value)}.{node.attr}"
        for node in ast.walk(module.tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
    }
    for member in sorted(touched):
        yield f"edge: {module.name} touches {member}"


def _shows(node: ast.AST) -> bool:
    """A call of the vault's display reads (``vault.show_name(…)``)."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in SHOWING
    )


def services_rule(module: Module) -> Iterator[str]:
    """A service imports of another only its ``v1`` stubs, its spec and ``PUBLISHED``."""
    own = _service_of(module.name)
    if own is None:
        return
    for target in sorted(imports(module)):
        other = _service_of(target)
        if other is None or other == own or target in PUBLISHED:
            continue
        if _within(target, f"civitas.{other}.v1") or target == f"civitas.{other}.spec":
            continue
        yield f"services: {module.name} imports {target}"


def layers_rule(module: Module) -> Iterator[str]:
    """A service's views and edges are imported only by its edges (insights' HTTP door
    answers with its gRPC replies) and its composition root: what sits below reads up
    to nothing."""
    own = _service_of(module.name)
    if own is None or module.name.rpartition(".")[2] in EDGES | COMPOSITION:
        return
    for target in sorted(imports(module)):
        if _service_of(target) == own and target.rpartition(".")[2] in {"views", *EDGES}:
            yield f"layers: {module.name} imports {target}"


def support_rule(module: Module) -> Iterator[str]:
    """A test imports helpers from ``tests/support`` or ``tests/conftest.py`` only."""
    if not module.name.startswith("tests."):
        return
    for target in sorted(imports(module)):
        if _within(target, "tests") and not _within(target, *TEST_HELPERS) and target != "tests":
            yield f"tests: {module.name} imports {target}"


def shared_rule(module: Module) -> Iterator[str]:
    """The kernel and the chassis, written once for every service, import no service."""
    if not _within(module.name, "civitas.eventkit", "civitas.chassis"):
        return
    for target in sorted(imports(module)):
        if _service_of(target) is not None:
            yield f"shared: {module.name} imports {target}"


def demo_rule(module: Module) -> Iterator[str]:
    """The demo's loaders talk to services over gRPC: of a service, only its ``v1``."""
    if not _within(module.name, "civitas.demo"):
        return
    for target in sorted(imports(module)):
        service = _service_of(target)
        if service is not None and not _within(target, f"civitas.{service}.v1"):
            yield f"demo: {module.name} imports {target}"


RULES: list[Callable[[Module], Iterator[str]]] = [
    domain_rule,
    edge_rule,
    services_rule,
    layers_rule,
    support_rule,
    shared_rule,
    demo_rule,
]


@functools.cache
def violations() -> frozenset[str]:
    return frozenset(
        found for module in MODULES.values() for rule in RULES for found in rule(module)
    )


def test_no_module_breaks_the_layering_beyond_the_known_violations() -> None:
    new = sorted(violations() - KNOWN_VIOLATIONS.keys())
    assert not new, "new violations of the layering:\n" + "\n".join(new)


def test_every_known_violation_still_happens_so_the_list_only_shrinks() -> None:
    gone = sorted(KNOWN_VIOLATIONS.keys() - violations())
    assert not gone, "fixed: remove from KNOWN_VIOLATIONS:\n" + "\n".join(gone)


def test_the_rules_see_the_modules_they_govern() -> None:
    names = MODULES.keys()
    for governed in ("civitas.cases.domain.case", "civitas.insights.http", "tests.support.fuzz"):
        assert governed in names
    assert not [n for n in names if ".v1" in n]
    assert _service_of("civitas.audit.grpc_api") == "audit"
    assert _service_of("civitas.chassis.server") is None


@pytest.mark.parametrize(
    ("name", "source", "rule", "expected"),
    [
        (
            "civitas.cases.domain.case",
            "import sqlalchemy\nfrom civitas.eventkit import SqliteEventStore, natural_id\n"
            "from civitas.party_orgs.domain.units import Unit\nfrom . import values\nimport re",
            domain_rule,
            [
                "domain: civitas.cases.domain.case imports civitas.eventkit.sqlite",
                "domain: civitas.cases.domain.case imports civitas.party_orgs.domain.units",
                "domain: civitas.cases.domain.case imports sqlalchemy",
            ],
        ),
        (
            "civitas.geography",
            "from civitas.chassis import auth",
            domain_rule,
            ["domain: civitas.geography imports civitas.chassis.auth"],
        ),
        (
            "civitas.eventkit.clock",
            "import grpc\nfrom .ids import natural_id",
            domain_rule,
            ["domain: civitas.eventkit.clock imports grpc"],
        ),
        (
            "civitas.funds.grpc_api",
            "import sqlalchemy as sa\nfrom civitas.eventkit.memory import InMemoryEventStore\n"
            "from civitas.eventkit import EventStore\n"
            "def f(self):\n    return self.app._get(1), self._own, x.__name__",
            edge_rule,
            [
                "edge: civitas.funds.grpc_api imports civitas.eventkit.memory",
                "edge: civitas.funds.grpc_api imports civitas.eventkit.store",
                "edge: civitas.funds.grpc_api imports sqlalchemy",
                "edge: civitas.funds.grpc_api touches self.app._get",
            ],
        ),
        (
            "civitas.insights.grpc_api",  # as it was before insights' views
            "from civitas.sealing import details_with, text_fields\n"
            "from civitas.chassis.convert import timestamp_out\n"
            "from .case_texts import CaseTexts\nfrom .queries import InsightsQueries",
            edge_rule,
            ["edge: civitas.insights.grpc_api imports civitas.sealing"],
        ),
        (
            "civitas.volunteers.grpc_api",
            "from civitas.chassis.auth import HIDDEN, Caller, may_see_personal_data\n"
            "from civitas.eventkit.personal import ERASED\n"
            "from .application import Volunteers, _seal\n"
            "async def f(self, v):\n    return await self.app.vault.show_name(v.name)",
            edge_rule,
            [
                "edge: civitas.volunteers.grpc_api imports civitas.chassis.auth.HIDDEN",
                "edge: civitas.volunteers.grpc_api imports "
                "civitas.chassis.auth.may_see_personal_data",
                "edge: civitas.volunteers.grpc_api imports civitas.eventkit.personal.ERASED",
                "edge: civitas.volunteers.grpc_api imports civitas.volunteers.application._seal",
                "edge: civitas.volunteers.grpc_api shows personal data: "
                "self.app.vault.show_name(v.name)",
            ],
        ),
        (
            "civitas.insights.projections",
            "from civitas.cases.domain.case import Case\n"
            "from civitas.cases import spec, lifecycle\n"
            "from civitas.funds.v1 import funds_pb2\nfrom civitas import catalog, sealing\n"
            "from ..funds.ledger import Ledger\nfrom .queries import x",
            services_rule,
            [
                "services: civitas.insights.projections imports civitas.cases.domain.case",
                "services: civitas.insights.projections imports civitas.funds.ledger",
            ],
        ),
        (
            "civitas.cases.application",
            "from .views import CaseViews\nfrom .grpc_api import case_message\n"
            "from .domain.case import Case\nfrom civitas.cases.case_index import CaseFilter",
            layers_rule,
            [
                "layers: civitas.cases.application imports civitas.cases.grpc_api",
                "layers: civitas.cases.application imports civitas.cases.views",
            ],
        ),
        (
            "civitas.cases.bootstrap",
            "from .views import CaseViews\nfrom .grpc_api import CasesServicer",
            layers_rule,
            [],
        ),
        (
            "tests.integration.test_x",
            "from tests.integration.test_cases_grpc import SECRET\nfrom .test_y import z\n"
            "from tests.support.platform import p\nfrom tests.conftest import q",
            support_rule,
            [
                "tests: tests.integration.test_x imports tests.integration.test_cases_grpc",
                "tests: tests.integration.test_x imports tests.integration.test_y",
            ],
        ),
        (
            "civitas.chassis.service",
            "from civitas.audit.grpc_api import audit_service\nfrom civitas import catalog",
            shared_rule,
            ["shared: civitas.chassis.service imports civitas.audit.grpc_api"],
        ),
        (
            "civitas.demo.funds",
            "from civitas.funds.application import DISTRICT_BUDGET\n"
            "from civitas.funds.v1 import funds_pb2\nfrom civitas.eventkit import natural_id\n"
            "from civitas.chassis.client import open_channel\nfrom .plan import Loader",
            demo_rule,
            ["demo: civitas.demo.funds imports civitas.funds.application"],
        ),
    ],
)
def test_each_rule_names_what_a_module_breaks(
    name: str, source: str, rule: Callable[[Module], Iterator[str]], expected: list[str]
) -> None:
    assert sorted(rule(Module.of(name, source))) == expected
